use std::process::ExitCode;

use clap::Parser;
use tiktok_poster::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tiktok-poster: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::CliError::Quiet(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tiktok-poster: {e}");
            e.exit_code()
        }
    }
}
