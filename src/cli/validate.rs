//! `validate FILE...`: the probe-and-policy step of ingest, run on files before they are submitted.

use std::path::Path;

use serde_json::{Value, json};

use super::{CliError, load_settings};

/// `validate FILE...`: probes each file, prints a table (or JSON), exits 1 when any fails.
pub async fn validate(
    config: Option<&Path>,
    files: &[std::path::PathBuf],
    as_json: bool,
    policy: Option<crate::config::Policy>,
) -> Result<(), CliError> {
    use crate::media;
    // The flag wins; then the configuration, when there is one that loads; then `brief`.
    let settings = match config {
        Some(_) => Some(load_settings(config)?),
        None => load_settings(None).ok(),
    };
    let mut video = settings.map(|s| s.video).unwrap_or_default();
    if let Some(p) = policy {
        video.policy = p;
    }
    let bar = crate::cli::progress::bar(files.len() as u64, "probing");
    let mut results = Vec::new();
    for path in files {
        bar.set_message(path.display().to_string());
        let checked = media::check(path, &video, None).await;
        bar.inc(1);
        results.push((path, checked.info, checked.violations));
    }
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| !r.2.is_empty()).count();
    if as_json {
        let arr: Vec<Value> = results
            .iter()
            .map(|(path, info, v)| {
                json!({
                    "path": path.display().to_string(),
                    "ok": v.is_empty(),
                    "info": info,
                    "violations": v,
                })
            })
            .collect();
        println!("{}", Value::Array(arr));
    } else {
        let fw = results
            .iter()
            .map(|r| r.0.display().to_string().chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        println!(
            "{:<fw$} {:<6} {:<9} {:>9} {:>10} {:>7} {:<6} {:<6} {:>10}",
            "FILE", "RESULT", "CONTAINER", "DURATION", "SIZE", "FPS", "VIDEO", "AUDIO", "BITRATE"
        );
        for (path, info, v) in &results {
            let name = path.display().to_string();
            let result = if v.is_empty() { "ok" } else { "FAIL" };
            match info {
                Some(i) => {
                    let dash = || "-".to_string();
                    println!(
                        "{:<fw$} {:<6} {:<9} {:>9} {:>10} {:>7} {:<6} {:<6} {:>10}",
                        name,
                        result,
                        i.container.name(),
                        i.duration_secs.map_or_else(dash, |d| format!("{d:.2} s")),
                        i.video.as_ref().map_or_else(dash, |t| {
                            let (w, h) = t.display_size();
                            format!("{w}x{h}")
                        }),
                        i.video
                            .as_ref()
                            .and_then(|t| t.fps)
                            .map_or_else(dash, |f| format!("{f:.2}")),
                        i.video.as_ref().map_or_else(dash, |t| t.codec.to_string()),
                        i.audio.as_ref().map_or_else(dash, |a| a.codec.to_string()),
                        i.bitrate_bps
                            .map_or_else(dash, |b| format!("{} kbps", b / 1000)),
                    );
                }
                None => println!("{name:<fw$} {result:<6}"),
            }
            for x in v {
                println!("    {}: {}", x.code, x.message);
            }
        }
        println!(
            "{} of {} file(s) pass the {} policy",
            results.len() - failed,
            results.len(),
            video.policy.as_str()
        );
    }
    if failed > 0 {
        return Err(CliError::Quiet(1));
    }
    Ok(())
}
