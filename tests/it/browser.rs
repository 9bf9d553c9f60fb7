//! The connect page in a real browser: Debian's Chromium driven by playwright-core (tests/browser).

use std::path::{Path, PathBuf};

use crate::app::TestApp;

/// The browser scripts' folder, when Debian's Chromium and playwright-core are installed. CI
/// installs both (.ci/run) and fails without them; elsewhere this says what is missing and the
/// caller returns.
pub(crate) fn browser_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide chromium and tests/browser/node_modules (npm ci --prefix tests/browser)"
        );
        eprintln!(
            "skipped: install chromium and run `npm ci --prefix tests/browser` to run the browser test"
        );
        return None;
    }
    Some(dir)
}

/// Loading `/`, typing a name, clicking "Connect TikTok", following the real redirects through the
/// simulator's authorize page, and arriving at the success page with the account listed.
#[tokio::test]
async fn the_connect_page_works_in_headless_chromium() {
    let Some(dir) = browser_dir() else { return };
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    let shots = app.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(dir.join("connect.mjs"))
        .arg(&app.base)
        .arg(&shots)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("browser check passed"));
    assert!(shots.join("accounts-listed.png").exists());
    let mut conn = app.redis.conn().await;
    let state: String =
        redis::AsyncCommands::hget(&mut conn, "tiktok-poster:account:browser", "state")
            .await
            .unwrap();
    assert_eq!(state, "ok");
    if let Ok(dest) = std::env::var("TP_SCREENSHOTS") {
        for f in ["accounts-empty.png", "connected.png", "accounts-listed.png"] {
            let _ = std::fs::copy(shots.join(f), Path::new(&dest).join(f));
        }
    }
}
