//! The dashboard in a real browser: `topcoins up` as a user runs it (simulator stepping every
//! second, recorder, backfill, exchanges, alerts, one API node), a user and key made with the
//! admin key, then `web/test/browser.mjs` drives Debian's headless Chromium through
//! playwright-core against it (the top list against `GET /?limit=200`, live prices, a coin's
//! candles, the watchlist flow, no console errors, first-load size and time) and saves a
//! screenshot of each page.
//!
//! Needs what `scripts/test` installs first: the built assets (`scripts/build-web`, which also
//! installs playwright-core), node, and chromium. Screenshots go to `$TOPCOINS_SCREENSHOT_DIR`
//! (default: `target/screenshots`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-key-of-the-browser-test";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() -> Result<()> {
    let root = repo();
    anyhow::ensure!(
        topcoins_api::dashboard::built(),
        "this build has no dashboard assets: run scripts/build-web (scripts/test does), then test again"
    );
    let script = root.join("web/test/browser.mjs");
    anyhow::ensure!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/build-web"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} not found: apt-get install chromium chromium-driver (scripts/test does)"
    );

    let data = tempfile::tempdir()?;
    let (mut up, base) = common::spawn_up(
        data.path(),
        &[
            "--sim-coins",
            "1500",
            "--sim-tick",
            "1s",
            "--price-interval",
            "500ms",
            "--ranking-interval",
            "2s",
            "--exchange-interval",
            "1s",
            "--backfill-coins",
            "5",
            "--admin-key",
            ADMIN,
        ],
    )
    .await?;

    topcoins_upstream::init_tls();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    // Ready: 200 coins listed, BTC's backfilled candles in, an exchange's pairs known.
    loop {
        let top = http.get(format!("{base}/?limit=200")).send().await?;
        let candles = http
            .get(format!("{base}/v1/coins/BTC/candles?interval=1h&limit=10"))
            .send()
            .await?;
        let exchanges = http.get(format!("{base}/v1/exchanges")).send().await?;
        if top.status() == 200 && candles.status() == 200 && exchanges.status() == 200 {
            let t: serde_json::Value = top.json().await?;
            let c: serde_json::Value = candles.json().await?;
            let e: serde_json::Value = exchanges.json().await?;
            let pairs = e["data"][0]["pairs"].as_array().map_or(0, Vec::len);
            if t["data"].as_array().map_or(0, Vec::len) == 200
                && c["data"].as_array().map_or(0, Vec::len) >= 5
                && pairs > 0
            {
                break;
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the system did not get ready within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let user: serde_json::Value = http
        .post(format!("{base}/v1/users"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "name": "browser" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = user["api_key"].as_str().context("api_key")?.to_owned();

    let shots = std::env::var_os("TOPCOINS_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/screenshots"));
    std::fs::create_dir_all(&shots)?;
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        Command::new("node")
            .arg(&script)
            .env("TOPCOINS_BASE", &base)
            .env("TOPCOINS_KEY", &key)
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM", &chromium)
            .current_dir(root.join("web"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the browser test took over 4 minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for shot in [
        "dashboard.png",
        "coin.png",
        "watchlist.png",
        "dashboard-phone-dark.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))
            .with_context(|| format!("screenshot {shot}"))?
            .len();
        assert!(size > 10_000, "{shot} is {size} bytes");
    }
    let _ = up.kill().await;
    Ok(())
}
