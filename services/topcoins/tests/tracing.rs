//! One change followed across processes: the real `topcoins price` and `topcoins api`
//! binaries with JSON logs; the trace id on the actor's "announced" line shows up on the API
//! node's lines for taking that snapshot in.

mod common;

use std::collections::BTreeSet;

use anyhow::Result;
use common::{Harness, POLL, WAIT, eventually};
use serde_json::Value;

/// Trace ids found in the spans of JSON log lines whose message contains `needle`.
fn trace_ids(log: &str, needle: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .flat_map(|v| {
            v["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .chain(std::iter::once(v["span"].clone()))
                .filter_map(|s| s["trace_id"].as_str().map(str::to_owned))
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_followed_across_processes_by_its_trace_id() -> Result<()> {
    let h = Harness::start(200).await?;
    let ranking = h.start_ranking(POLL);
    let binary = env!("CARGO_BIN_EXE_topcoins");
    // The node listens before the price actor starts, so it hears the first announcement.
    let (api, _, mut api_logs) = common::spawn_and_wait_for_addr(
        tokio::process::Command::new(binary)
            .args(["api", "--listen", "127.0.0.1:0"])
            .env("NATS_URL", h.nats.url())
            .env("RUST_LOG", "info,topcoins_api=debug"),
        "api node listening",
    )
    .await?;
    let (price, mut price_logs) = common::Logs::spawn(
        tokio::process::Command::new(binary)
            .args([
                "price",
                "--cmc-url",
                &h.sim_url(),
                "--price-interval",
                "200ms",
                "--price-universe",
                "200",
            ])
            .env("NATS_URL", h.nats.url())
            .env("RUST_LOG", "info"),
    )?;
    // Changes announced by the actor that the node says it applied, by trace id.
    let followed = || {
        let announced = trace_ids(&price_logs.text(), "announced");
        let applied = trace_ids(&api_logs.text(), "notice applied");
        announced.intersection(&applied).count()
    };
    let follow = |n: usize| async move {
        eventually(
            &format!("{n} changes followed into the API node"),
            || async { Ok((followed() >= n).then_some(())) },
        )
        .await
    };
    // The first snapshot, then the market moves and the second follows.
    follow(1).await?;
    h.tick().await?;
    follow(2).await?;
    for child in [&price, &api] {
        let pid = child.id().expect("running").to_string();
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await?;
    }
    for (mut child, logs) in [(price, &mut price_logs), (api, &mut api_logs)] {
        tokio::time::timeout(WAIT, child.wait()).await??;
        logs.finished().await?;
    }
    // On the whole logs, once both processes are gone.
    let (price_log, api_log) = (price_logs.text(), api_logs.text());
    let announced = trace_ids(&price_log, "announced");
    let applied = trace_ids(&api_log, "notice applied");
    assert!(
        announced.len() >= 2,
        "price announcements with trace ids: {announced:?}\n{price_log}"
    );
    let followed: Vec<&String> = announced.intersection(&applied).collect();
    assert!(
        followed.len() >= 2,
        "no change followed into the API node: announced {announced:?}, applied {applied:?}"
    );
    ranking.stop().await;
    h.sim.stop().await;
    Ok(())
}
