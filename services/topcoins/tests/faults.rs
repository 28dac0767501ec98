//! Every fault the simulator can inject, driven into a running actor: the snapshot is not
//! published, API nodes keep serving the last good data, and the right counter moves. Unknown
//! extra fields are the exception: they must break nothing.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{ApiNode, Harness, POLL, eventually};
use serde_json::{Value, json};
use topcoins_schemas::Kind;
use topcoins_schemas::api::TopResponse;

const COINS: usize = 300;

/// A fault, the counter reason it must produce, and whether the poller retries it.
struct Case {
    fault: Value,
    reason: &'static str,
}

fn case(fault: Value, reason: &'static str) -> Case {
    Case { fault, reason }
}

/// Faults every provider answers the same way.
fn common_cases() -> Vec<Case> {
    vec![
        case(json!({"fault": "status", "status": 500}), "http_status"),
        case(json!({"fault": "status", "status": 502}), "http_status"),
        case(json!({"fault": "status", "status": 401}), "auth"),
        case(
            json!({"fault": "status", "status": 429, "retry_after": 1}),
            "rate_limited",
        ),
        case(json!({"fault": "delay", "ms": 2000}), "timeout"),
        case(json!({"fault": "malformed_json"}), "malformed"),
        case(json!({"fault": "truncated_json"}), "malformed"),
        case(json!({"fault": "html_page"}), "malformed"),
        case(json!({"fault": "missing_fields"}), "malformed"),
        case(json!({"fault": "nan_price"}), "malformed"),
        case(json!({"fault": "duplicate_entries"}), "duplicate"),
    ]
}

async fn hash_of(h: &Harness, node: &ApiNode, kind: &str) -> Result<String> {
    let body = h.get(&node.url("/?limit=20")).await?.text().await?;
    let top: TopResponse = serde_json::from_str(&body)?;
    Ok(match kind {
        "prices" => top.meta.prices_hash.to_hex(),
        _ => top.meta.ranking_hash.to_hex(),
    })
}

/// Runs every case against one endpoint whose snapshots are announced on `subject`.
async fn run_cases(
    h: &Harness,
    node: &ApiNode,
    endpoint: &str,
    provider: &str,
    notice_kind: Kind,
    kind: &str,
    cases: Vec<Case>,
) -> Result<()> {
    let client = async_nats::connect(h.nats.url()).await?;
    let mut notices = topcoins_bus::subscribe_notices(&client, &[notice_kind]).await?;
    client.flush().await?;
    let store = topcoins_bus::SnapshotStore::open(client.clone()).await?;
    for case in cases {
        let label = case.fault.to_string();
        let counter = |reason| {
            h.actor_metric(
                "topcoins_upstream_rejected_total",
                &[("provider", provider), ("reason", reason)],
            )
        };
        let count_before = counter(case.reason);
        let mut spec = case.fault.clone();
        spec["endpoint"] = json!(endpoint);
        h.fault(spec).await?;
        // Two whole cycles later the fault has taken hold (a cycle in flight when it was set
        // may still have read good data); then move the market: without the fault this would
        // be announced.
        h.cycles_past(kind, h.cycles(kind), 2.0).await?;
        let published = h.published(kind);
        // What was announced last before the fault took hold (the previous case's recovery
        // may have taken two announcements: a ranking poll that straddled its tick and the
        // next one), served by the node: the data the fault must leave in place.
        let before = tokio::time::timeout(common::WAIT, store.latest(notice_kind))
            .await??
            .context("a notice")?
            .notice
            .hash
            .to_hex();
        eventually(
            &format!("{label}: node to serve the last announced data"),
            || async { Ok((hash_of(h, node, kind).await? == before).then_some(())) },
        )
        .await?;
        h.tick().await?;
        eventually(
            &format!("{label}: counter {provider}/{}", case.reason),
            || async { Ok((counter(case.reason) > count_before).then_some(())) },
        )
        .await?;
        // Two more cycles under the fault, counted, so that this is no vacuous "nothing yet".
        h.cycles_past(kind, h.cycles(kind), 2.0).await?;
        ensure!(
            h.published(kind) == published,
            "{label}: a notice was published during the fault"
        );
        let r = h.get(&node.url("/?limit=20")).await?;
        ensure!(r.status() == 200, "{label}: API answered {}", r.status());
        ensure!(
            hash_of(h, node, kind).await? == before,
            "{label}: the served {kind} snapshot changed"
        );

        // Recovery: the change made during the fault is announced once the fault is gone,
        // and that notice crosses the bus.
        h.clear_faults().await?;
        let recovered = eventually(
            &format!("{label}: node to serve the recovered data"),
            || async {
                let served = hash_of(h, node, kind).await?;
                Ok((served != before).then_some(served))
            },
        )
        .await?;
        tokio::time::timeout(common::WAIT, async {
            loop {
                let received = notices.next().await.context("subscription open")??;
                if received.notice.hash.to_hex() == recovered {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        })
        .await
        .with_context(|| format!("{label}: no notice of the recovered data"))??;
    }
    Ok(())
}

/// Extra fields break nothing: a change is announced as usual, and the snapshot is the same
/// as without them.
async fn extra_fields_break_nothing(
    h: &Harness,
    node: &ApiNode,
    endpoint: &str,
    notice_kind: Kind,
    kind: &str,
) -> Result<()> {
    let client = async_nats::connect(h.nats.url()).await?;
    let mut notices = topcoins_bus::subscribe_notices(&client, &[notice_kind]).await?;
    client.flush().await?;
    h.fault(json!({"endpoint": endpoint, "fault": "extra_fields"}))
        .await?;
    // Two whole cycles later every poll sees the extra fields.
    h.cycles_past(kind, h.cycles(kind), 2.0).await?;
    let published = h.published(kind);
    h.tick().await?;
    // What is announced after that is the data read with extra fields, and its notice
    // crosses the bus.
    eventually("the change to be announced", || async {
        Ok((h.published(kind) > published).then_some(()))
    })
    .await?;
    // A ranking poll that straddles the tick reads pages from both sides of it and is a
    // snapshot of its own, followed by the whole new one: settled is when two whole cycles
    // after an announcement announce nothing more.
    let mut settled = h.published(kind);
    loop {
        h.cycles_past(kind, h.cycles(kind), 2.0).await?;
        let now = h.published(kind);
        if now == settled {
            break;
        }
        settled = now;
    }
    let store = topcoins_bus::SnapshotStore::open(client.clone()).await?;
    let latest = tokio::time::timeout(common::WAIT, store.latest(notice_kind))
        .await??
        .context("a notice")?;
    let with_extras = latest.notice.hash.to_hex();
    tokio::time::timeout(common::WAIT, async {
        loop {
            let received = notices.next().await.context("subscription open")??;
            if received.notice.hash == latest.notice.hash {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("no notice of the data with extra fields")??;
    eventually(
        "node to serve the data announced with extra fields",
        || async { Ok((hash_of(h, node, kind).await? == with_extras).then_some(())) },
    )
    .await?;
    let published = h.published(kind);
    h.clear_faults().await?;
    // Three counted cycles without the extra fields: the same data, so nothing is announced.
    h.cycles_past(kind, h.cycles(kind), 3.0).await?;
    ensure!(
        h.published(kind) == published,
        "the same data without the extra fields was announced again"
    );
    ensure!(hash_of(h, node, kind).await? == with_extras);
    Ok(())
}

/// Starts a system whose price side is `price` (the ranking side is CryptoCompare), runs every
/// fault against `endpoint`, then the extra-fields check. `error_in_200` is the reason the
/// provider's own error body maps to. Returns the harness for endpoint-specific checks.
async fn endpoint_faults(
    endpoint: &str,
    notice_kind: Kind,
    kind: &str,
    error_in_200: &'static str,
    price: impl FnOnce(&mut topcoins_price::PriceConfig),
) -> Result<(Harness, ApiNode, Vec<common::Component>)> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let mut config = h.price_config(POLL);
    price(&mut config);
    let price = h.start_price_with(config);
    let ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;
    let mut cases = common_cases();
    cases.extend([
        case(json!({"fault": "error_in_200"}), error_in_200),
        case(json!({"fault": "empty_data"}), "empty"),
        case(json!({"fault": "negative_price"}), "bad_number"),
    ]);
    run_cases(&h, &node, endpoint, endpoint, notice_kind, kind, cases).await?;
    extra_fields_break_nothing(&h, &node, endpoint, notice_kind, kind).await?;
    Ok((h, node, vec![price, ranking]))
}

async fn stop(h: Harness, node: ApiNode, parts: Vec<common::Component>) {
    for c in std::iter::once(node.component).chain(parts) {
        c.stop().await;
    }
    h.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinmarketcap_faults() -> Result<()> {
    // No reachable fallback: this test is about CoinMarketCap alone (failover has its own).
    let no_fallback =
        |c: &mut topcoins_price::PriceConfig| c.coingecko_url = "http://127.0.0.1:1".into();
    let (h, node, parts) =
        endpoint_faults("coinmarketcap", Kind::PRICES, "prices", "auth", no_fallback).await?;
    let shape = h.actor_metric(
        "topcoins_upstream_shape_errors_total",
        &[("provider", "coinmarketcap"), ("path", "data[].symbol")],
    );
    assert!(shape >= 1.0, "the missing field's path is counted");
    assert!(
        h.actor_metric(
            "topcoins_upstream_retries_total",
            &[("provider", "coinmarketcap")]
        ) >= 3.0
    );
    stop(h, node, parts).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cryptocompare_faults() -> Result<()> {
    let (h, node, parts) = endpoint_faults(
        "cryptocompare",
        Kind::RANKING,
        "ranking",
        "rate_limited",
        |_| {},
    )
    .await?;
    // The rate-limit error carried its allowance.
    assert_eq!(
        h.actor_metric(
            "topcoins_upstream_calls_left",
            &[("provider", "cryptocompare"), ("period", "month")]
        ),
        -1.0
    );
    stop(h, node, parts).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coingecko_faults() -> Result<()> {
    // No CoinMarketCap configured: CoinGecko is the price source.
    let keyless = |c: &mut topcoins_price::PriceConfig| {
        c.cmc_url = topcoins_price::cmc::DEFAULT_URL.into();
        c.cmc_api_key = None;
    };
    let (h, node, parts) =
        endpoint_faults("coingecko", Kind::PRICES, "prices", "rate_limited", keyless).await?;
    let top: TopResponse =
        serde_json::from_str(&h.get(&node.url("/?limit=5")).await?.text().await?)?;
    assert_eq!(top.data[0].price_source.as_deref(), Some("coingecko"));
    stop(h, node, parts).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_side_falls_over_to_coingecko_and_back() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;
    let source = || async {
        let body = h.get(&node.url("/?limit=10")).await?.text().await?;
        let top: TopResponse = serde_json::from_str(&body)?;
        Ok::<_, anyhow::Error>(
            top.data
                .iter()
                .filter_map(|e| e.price_source.clone())
                .collect::<Vec<_>>(),
        )
    };
    assert!(source().await?.iter().all(|s| s == "coinmarketcap"));

    h.fault(json!({"endpoint": "coinmarketcap", "fault": "status", "status": 500}))
        .await?;
    eventually("prices from coingecko", || async {
        Ok(source()
            .await?
            .iter()
            .all(|s| s == "coingecko")
            .then_some(()))
    })
    .await?;
    assert_eq!(
        h.actor_metric("topcoins_price_failovers_total", &[("to", "coingecko")]),
        1.0
    );
    assert_eq!(
        h.actor_metric("topcoins_price_source_active", &[("source", "coingecko")]),
        1.0
    );

    h.clear_faults().await?;
    eventually("prices from coinmarketcap again", || async {
        Ok(source()
            .await?
            .iter()
            .all(|s| s == "coinmarketcap")
            .then_some(()))
    })
    .await?;
    assert_eq!(
        h.actor_metric("topcoins_price_failovers_total", &[("to", "coinmarketcap")]),
        1.0
    );
    assert_eq!(
        h.actor_metric(
            "topcoins_price_source_active",
            &[("source", "coinmarketcap")]
        ),
        1.0
    );
    for c in [node.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_cycles_are_signalled() -> Result<()> {
    let h = Harness::start(COINS).await?;
    // A 400 ms interval and an upstream that answers in 250 ms: each cycle takes more than
    // half its interval, which is counted (and logged as a warning).
    h.fault(json!({"endpoint": "cryptocompare", "fault": "delay", "ms": 250}))
        .await?;
    let config = topcoins_ranking::RankingConfig {
        cryptocompare_url: h.sim_url(),
        cryptocompare_api_key: None,
        ranking_interval: Some(Duration::from_millis(400)),
        ranking_universe: Some(100),
    };
    let context = h.context("ranking");
    let ranking = common::Component::spawn(move |s| {
        Box::pin(topcoins_ranking::run(config, context, s.wait()))
    });
    eventually("a slow cycle to be counted", || async {
        Ok(
            (h.actor_metric("topcoins_poll_slow_cycles_total", &[("kind", "ranking")]) >= 1.0)
                .then_some(()),
        )
    })
    .await?;
    for c in [ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}
