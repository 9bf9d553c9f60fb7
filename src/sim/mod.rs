//! `tiktok-poster sim`: a local TikTok, as strict as TikTok.
//!
//! It serves the OAuth and Content Posting endpoints of `tiktok-api.md` with TikTok's envelopes and codes,
//! so the daemon, its tests, the benchmarks and a user's dry run all exercise the real client over real
//! HTTP. Strict where TikTok is strict, or client bugs would pass: the chunk plan at init, sequential
//! `Content-Range` (416 otherwise), `Content-Length` matching the body, `upload_url` expiry, expiring
//! bearer tokens, rotating refresh tokens, single-use codes, privacy levels from `creator_info`, per-token
//! rate limits, the daily Direct Post cap, the pending-inbox cap; and the Display API a daemon reads
//! back (user info by scope, the public video list, video queries).
//!
//! Inspection (`/_sim/posts`, `/_sim/stats`) lets a test assert "published exactly once" against TikTok's
//! own view; `/_sim/faults` queues failures, and start-up flags set background fault rates for soaks.
//!
//! The server loop is hand-rolled on hyper (not `axum::serve`) so a handler can cut its own TCP
//! connection mid-request: that is how a dropped connection is simulated.

mod api;
mod state;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use state::{Fault, SimState};

/// Which field of the Display API's video object carries a post's caption: `tiktok-api.md` section 13
/// leaves it unconfirmed, so the simulator serves either reading and the other field is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptionField {
    /// `title`.
    Title,
    /// `video_description`.
    VideoDescription,
}

/// Simulator settings; also the `tiktok-poster sim` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Base URL put into `upload_url`s (default: http:// + the bound address).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Lifetime of issued access tokens, in seconds (`expires_in`).
    #[arg(long = "token-ttl", default_value_t = 86_400)]
    pub token_ttl_secs: u64,
    /// Lifetime of issued refresh tokens, in seconds (`refresh_expires_in`).
    #[arg(long = "refresh-ttl", default_value_t = 31_536_000)]
    pub refresh_ttl_secs: u64,
    /// Lifetime of an authorization code, in seconds.
    #[arg(long = "code-ttl", default_value_t = 600)]
    pub code_ttl_secs: u64,
    /// Lifetime of an `upload_url`, in seconds (TikTok: one hour).
    #[arg(long = "upload-url-ttl", default_value_t = 3600)]
    pub upload_url_ttl_secs: u64,
    /// Milliseconds from the last byte (or a pull init) until the post is complete.
    #[arg(long = "publish-delay-ms", default_value_t = 2000)]
    pub publish_delay_ms: u64,
    /// Milliseconds after completion until a public post gets its public id (moderation).
    #[arg(long = "post-id-delay-ms", default_value_t = 0)]
    pub post_id_delay_ms: u64,
    /// Direct posts per creator per rolling 24 h before `spam_risk_too_many_posts`.
    #[arg(long, default_value_t = 15)]
    pub daily_post_cap: u32,
    /// Inbox drafts pending per creator before `spam_risk_too_many_pending_share`.
    #[arg(long, default_value_t = 5)]
    pub pending_inbox_cap: u32,
    /// Init calls per access token per minute.
    #[arg(long, default_value_t = 6)]
    pub init_rate_per_min: u32,
    /// `creator_info` calls per access token per minute.
    #[arg(long, default_value_t = 20)]
    pub creator_info_rate_per_min: u32,
    /// Status fetches per access token per minute.
    #[arg(long, default_value_t = 30)]
    pub status_rate_per_min: u32,
    /// `user/info`, `video/list` and `video/query` calls per access token per minute, each endpoint
    /// separately.
    #[arg(long, default_value_t = 600)]
    pub display_rate_per_min: u32,
    /// Which Display API field carries a post's caption (TikTok leaves it unconfirmed).
    #[arg(long, value_enum, default_value_t = CaptionField::Title)]
    pub display_caption: CaptionField,
    /// Count private posts in `video_count` (TikTok leaves it unconfirmed; third parties say public only).
    #[arg(long)]
    pub video_count_includes_private: bool,
    /// Refuse a `video/query` naming another user's video instead of leaving it out (unconfirmed).
    #[arg(long)]
    pub display_refuse_foreign_ids: bool,
    /// Accept only this client key (default: any).
    #[arg(long)]
    pub client_key: Option<String>,
    /// Accept only this client secret (default: any).
    #[arg(long)]
    pub client_secret: Option<String>,
    /// HTTP status of OAuth error bodies; TikTok has been seen answering 200 with an error body.
    #[arg(long, default_value_t = 400)]
    pub oauth_error_status: u16,
    /// Behave like an unaudited app: Direct Post to a public account gets
    /// `unaudited_client_can_only_post_to_private_accounts`, and only SELF_ONLY is allowed.
    #[arg(long)]
    pub unaudited: bool,
    /// Refuse every multi-chunk init with "The chunk size is invalid" (TikTok's August 2026 behaviour).
    #[arg(long)]
    pub reject_multi_chunk: bool,
    /// URL prefixes verified for PULL_FROM_URL (others get `url_ownership_unverified`).
    #[arg(long = "verified-url-prefix")]
    pub verified_url_prefixes: Vec<String>,
    /// Share of API calls answered with a 5xx (0.0 to 1.0), for soak tests.
    #[arg(long, default_value_t = 0.0)]
    pub fault_5xx_rate: f64,
    /// Share of API calls whose connection is dropped (uploads: mid-body).
    #[arg(long, default_value_t = 0.0)]
    pub fault_drop_rate: f64,
    /// Share of API calls answered with 429 `rate_limit_exceeded`.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429_rate: f64,
    /// Serve HTTPS, as TikTok does, with a certificate made at start by a CA of the simulator's own
    /// (its certificate is written to `--tls-ca-out`; trust it with `[tiktok] ca_file`).
    #[arg(long)]
    pub tls: bool,
    /// With `--tls`: where to write the CA certificate (PEM). Default: a file in the temporary
    /// directory, named on stdout.
    #[arg(long, requires = "tls")]
    pub tls_ca_out: Option<PathBuf>,
    /// Do not hash uploaded bytes (`sha256` stays null in `/_sim/posts`): for throughput runs, so the
    /// simulator's hashing is not the ceiling. Every other upload check still applies.
    #[arg(long)]
    pub skip_upload_hash: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            token_ttl_secs: 86_400,
            refresh_ttl_secs: 31_536_000,
            code_ttl_secs: 600,
            upload_url_ttl_secs: 3600,
            publish_delay_ms: 2000,
            post_id_delay_ms: 0,
            daily_post_cap: 15,
            pending_inbox_cap: 5,
            init_rate_per_min: 6,
            creator_info_rate_per_min: 20,
            status_rate_per_min: 30,
            display_rate_per_min: 600,
            display_caption: CaptionField::Title,
            video_count_includes_private: false,
            display_refuse_foreign_ids: false,
            client_key: None,
            client_secret: None,
            oauth_error_status: 400,
            unaudited: false,
            reject_multi_chunk: false,
            verified_url_prefixes: Vec::new(),
            fault_5xx_rate: 0.0,
            fault_drop_rate: 0.0,
            fault_429_rate: 0.0,
            tls: false,
            tls_ca_out: None,
            skip_upload_hash: false,
        }
    }
}

impl SimConfig {
    /// Checks the flags; the message names the flag and the fix.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("--fault-5xx-rate", self.fault_5xx_rate),
            ("--fault-drop-rate", self.fault_drop_rate),
            ("--fault-429-rate", self.fault_429_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "{name} {rate} is out of range; give a share between 0.0 and 1.0"
                ));
            }
        }
        if self.token_ttl_secs == 0 {
            return Err(
                "--token-ttl 0 would issue tokens that are already expired; give at least 1".into(),
            );
        }
        Ok(())
    }
}

/// Shared state of a running simulator.
#[derive(Clone)]
pub(crate) struct Sim {
    pub(crate) cfg: Arc<SimConfig>,
    pub(crate) base_url: Arc<String>,
    pub(crate) state: Arc<Mutex<SimState>>,
}

impl Sim {
    /// Locks the state. A poisoned lock means a handler panicked mid-update; the simulator's state is
    /// plain data with no invariant spanning the panic, so it is taken over.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator (for tests and benchmarks that run it in-process).
#[derive(Debug)]
pub struct SimHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://` (or `https://` with `--tls`) + the bound address.
    pub base_url: String,
    /// With `--tls`: the CA certificate that signed the simulator's (PEM file).
    pub ca_file: Option<PathBuf>,
    /// The private directory made for `ca_file` when `--tls-ca-out` was not given; removed on drop.
    _own_dir: Option<tls::OwnDir>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// How long a TLS client has to finish its handshake before its connection is closed.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// A cancellation handle for one TCP connection, put in every request's extensions: cancelling it
/// closes the connection at once (a simulated network drop).
#[derive(Clone)]
pub(crate) struct ConnKill(pub(crate) CancellationToken);

/// Binds and starts the simulator in the background.
pub async fn spawn(cfg: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let tls = cfg
        .tls
        .then(|| tls::make(addr, cfg.tls_ca_out.as_deref()))
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let own_url = format!("{scheme}://{addr}");
    let base_url = cfg.public_url.clone().unwrap_or_else(|| own_url.clone());
    let ca_file = tls.as_ref().map(|t| t.ca_file.clone());
    let (acceptor, own_dir) = tls.map_or((None, None), |t| (Some(t.acceptor), t.own_dir));
    let sim = Sim {
        cfg: Arc::new(cfg),
        base_url: Arc::new(base_url.trim_end_matches('/').to_string()),
        state: Arc::new(Mutex::new(SimState::default())),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, acceptor, sim, shutdown.clone()));
    Ok(SimHandle {
        addr,
        base_url: own_url,
        ca_file,
        _own_dir: own_dir,
        shutdown,
        task,
    })
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Sim,
    shutdown: CancellationToken,
) {
    let router = api::router(sim);
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "Simulator accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let kill = CancellationToken::new();
        let router = router.clone();
        let conn_kill = kill.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnKill(conn_kill.clone()));
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.keep_alive(true);
            let conn = async {
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                    // A failed handshake (a client that does not trust the CA) ends the connection,
                    // as TikTok's would.
                    Some(tls) => {
                        let hello = tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream));
                        if let Ok(Ok(stream)) = hello.await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = conn => {}
                _ = kill.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// `tiktok-poster sim`: runs until SIGINT or SIGTERM.
pub async fn run(cfg: SimConfig) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let handle = spawn(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen: {e}"))?;
    // The signal handlers are installed (by polling once) before the address is printed: a script
    // that reads the address and sends SIGTERM at once must get a clean stop, not the default kill.
    let mut stop = Box::pin(crate::shutdown_signal());
    std::future::poll_fn(|cx| {
        let _ = stop.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    // Printed on stdout so scripts can read them: the CA first (with `--tls`), then the address,
    // the last word of its line, when port 0 was asked for.
    if let Some(ca) = &handle.ca_file {
        println!("tiktok-poster sim CA certificate at {}", ca.display());
    }
    println!("tiktok-poster sim listening on {}", handle.base_url);
    tracing::info!(addr = %handle.addr, "Simulator started.");
    stop.await;
    handle.stop().await;
    Ok(())
}
