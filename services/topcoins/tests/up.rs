//! `topcoins up` as a user runs it: the real binary, with no NATS_URL (so it starts its own
//! nats-server) and no API keys (so it starts the simulator), listening on ports the OS picks.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_every_component_and_stops_cleanly_on_sigterm() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (mut child, api) = common::spawn_up(
        data.path(),
        &["--price-interval", "1s", "--ranking-interval", "1s"],
    )
    .await?;

    topcoins_upstream::init_tls();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let response = http.get(format!("{api}/?limit=5")).send().await?;
        if response.status() == 200 {
            break response.text().await?;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("GET / never answered 200 (last {})", response.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let top: topcoins_schemas::api::TopResponse = serde_json::from_str(&body)?;
    assert_eq!(top.data.len(), 5);
    assert_eq!(top.data[0].rank, 1);

    // The record: a SQLite file in the data directory, with the recorder's candles and, from
    // the simulator's CryptoCompare history, backfilled daily ones for the top coin.
    use topcoins_history::{CandleStore, Interval, Range, Source, SqliteStore};
    let store = SqliteStore::open(&data.path().join("topcoins.db")).await?;
    let symbol = top.data[0].symbol.to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    let range = |interval| Range {
        symbol: symbol.clone(),
        interval,
        from: 0,
        to: i64::MAX,
        limit: 2000,
        cursor: None,
    };
    loop {
        let daily = store.range(&range(Interval::D1)).await?.candles;
        let minutes = store.range(&range(Interval::M1)).await?.candles;
        let backfilled = daily
            .iter()
            .filter(|c| c.source == Source::CryptoCompare)
            .count();
        let recorded = minutes.iter().any(|c| c.source == Source::Recorded);
        if backfilled > 30 && recorded {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{symbol}: {backfilled} backfilled daily candles, recorded minutes: {recorded}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One registry: the API's /metrics has the actors' and the simulator's series too.
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        "topcoins_http_requests_total",
        "topcoins_poll_cycles_total",
        "topcoins_upstream_requests_total",
        "topcoins_sim_requests_total",
        "topcoins_recorder_notices_total",
        "topcoins_backfill_pages_total",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics under up"
        );
    }

    // SIGTERM: every component stops and the process exits 0.
    let pid = child.id().context("pid")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .context("up did not stop within 15 s of SIGTERM")??;
    assert!(exit.success(), "up exited with {exit}");
    Ok(())
}
