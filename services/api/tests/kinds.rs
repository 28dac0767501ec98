//! A new kind of data is a type and a registration: this test kind is declared here, outside
//! every crate, and the API node's follower takes it in — subscribed, fetched or pushed,
//! verified, ordered by the notice stream's sequence (not the publisher's clock), and published to
//! the request side — with no code that names it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::time::timeout;
use topcoins_api::metrics::ApiMetrics;
use topcoins_api::slots::Slots;
use topcoins_bus::{NatsConfig, SnapshotStore, TraceContext, connect};
use topcoins_schemas::{HashNotice, Kind, Snapshot};
use topcoins_testkit::NatsServer;

const T: Duration = Duration::from_secs(20);

/// The test kind: one exchange's tickers, say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tickers {
    source: String,
    pairs: Vec<(String, f64)>,
}

impl Snapshot for Tickers {
    const KIND: Kind = Kind::new("test_tickers");

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn source(&self) -> &str {
        &self.source
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_test_kind_is_followed_end_to_end() -> Result<()> {
    let server = NatsServer::start().await?;
    let config = NatsConfig {
        url: server.url().to_owned(),
        name: "kinds-test".into(),
        ..Default::default()
    };
    let (client, link) = timeout(T, connect(&config)).await??;
    let store = timeout(T, SnapshotStore::open(client.clone())).await??;
    store.ensure_kinds(&[Tickers::KIND]).await?;

    // A first snapshot, stored and announced before the follower starts: warm-up reads it.
    let announce = |tickers: Tickers, follows: u64, as_of: OffsetDateTime| {
        let store = store.clone();
        async move {
            let (bytes, hash) = tickers.encode();
            store.put(hash, &bytes).await?;
            let notice = HashNotice {
                hash,
                as_of,
                count: tickers.len() as u64,
                source: tickers.source.clone(),
                follows: Some(follows),
            };
            let sequence = store
                .announce(Tickers::KIND, &notice, &TraceContext::new())
                .await?;
            anyhow::Ok((hash, sequence))
        }
    };
    let first = Tickers {
        source: "kraken".into(),
        pairs: vec![("btc-usd".into(), 67_000.0)],
    };
    let (first_hash, sequence) = announce(first.clone(), 0, OffsetDateTime::now_utc()).await?;

    // The one registration.
    let mut slots = Slots::default();
    let current = slots.register::<Tickers>();

    let registry = prometheus::Registry::new();
    let metrics = ApiMetrics::register(&registry)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(topcoins_api::follower::follow(
        client.clone(),
        1,
        link,
        metrics,
        slots,
        Arc::new(ArcSwapOption::empty()),
        Arc::new(tokio::sync::Notify::new()),
        tokio::sync::watch::channel(Default::default()).1,
        async move {
            let _ = stopped.await;
        },
    ));
    let held = |want| {
        let current = current.clone();
        async move {
            timeout(T, async {
                loop {
                    if let Some(latest) = current.load_full()
                        && latest.notice.hash == want
                    {
                        return latest;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .context("the follower never held the announced snapshot")
        }
    };
    let latest = held(first_hash).await.context("warm-up")?;
    assert_eq!(*latest.snapshot, first);

    // A live change: the bytes are pushed as they are stored, the notice follows. Its
    // publisher's clock is an hour behind (a new leader on another machine): notices are
    // ordered by the stream's sequence, so it is taken all the same.
    let second = Tickers {
        source: "kraken".into(),
        pairs: vec![("btc-usd".into(), 67_100.0), ("eth-usd".into(), 3_500.0)],
    };
    let behind = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let (second_hash, _) = announce(second.clone(), sequence, behind).await?;
    let latest = held(second_hash).await.context("live")?;
    assert_eq!(*latest.snapshot, second);
    for (name, at_least) in [
        ("topcoins_api_notices_received_total", 1.0),
        ("topcoins_api_snapshot_fetches_total", 1.0),
        ("topcoins_api_snapshots_pushed_total", 1.0),
    ] {
        let value: f64 = registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "test_tickers"))
            .map(|m| m.get_counter().get_value())
            .sum();
        assert!(
            value >= at_least,
            "{name}{{kind=\"test_tickers\"}} = {value}"
        );
    }
    let _ = stop.send(());
    timeout(T, follower).await??;
    Ok(())
}
