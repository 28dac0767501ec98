//! A poller that panics mid-cycle is restarted by its supervisor (and counted), resumes from
//! the store without announcing unchanged data again, and an error in a cycle is not a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use prometheus::Registry;
use topcoins_bus::{NatsConfig, SnapshotStore, connect};
use topcoins_poller::{PollerMetrics, Source, run_poller};
use topcoins_schemas::{PriceSnapshot, PricedCoin};
use topcoins_testkit::NatsServer;
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, UpstreamMetrics};

/// Always the same prices; fetch 2 panics, fetch 4 fails.
struct Flaky {
    fetches: Arc<AtomicUsize>,
}

impl Source for Flaky {
    type Snapshot = PriceSnapshot;

    fn provider(&self) -> &'static str {
        "flaky"
    }

    async fn fetch(&mut self) -> Result<PriceSnapshot, UpstreamError> {
        match self.fetches.fetch_add(1, Ordering::SeqCst) + 1 {
            2 => panic!("injected panic in a poll cycle"),
            4 => Err(UpstreamError::new(
                "flaky",
                UpstreamErrorKind::Status(503),
                "injected error",
            )),
            _ => Ok(PriceSnapshot::new(
                "flaky",
                vec![PricedCoin {
                    id: "1".into(),
                    symbol: "BTC".into(),
                    name: "Bitcoin".into(),
                    price_usd: 1.0,
                    market_cap_usd: None,
                }],
            )
            .expect("valid")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_poller_is_restarted_and_resumes_quietly() -> Result<()> {
    let server = NatsServer::start().await?;
    let config = NatsConfig {
        url: server.url().to_owned(),
        name: "test".into(),
        ..Default::default()
    };
    let (client, _) = connect(&config).await?;
    client.flush().await?;
    let store = SnapshotStore::open(client.clone()).await?;
    let registry = Registry::new();
    let metrics = PollerMetrics::register(&registry)?;
    let upstream_metrics = UpstreamMetrics::register(&registry)?;
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let make_source = Arc::new(move || Flaky {
        fetches: counter.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let poller = tokio::spawn(run_poller(
        make_source,
        None,
        store,
        Duration::from_millis(50),
        Duration::from_secs(3600),
        (metrics.clone(), upstream_metrics.clone()),
        async {
            let _ = stop_rx.await;
        },
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fetches.load(Ordering::SeqCst) < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polling did not go on after the panic"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metrics.actor_restarts.with_label_values(&["prices"]).get(),
        1,
        "one panic, one restart"
    );
    assert_eq!(
        upstream_metrics
            .rejected
            .with_label_values(&["flaky", "http_status"])
            .get(),
        1,
        "the error was counted, not a crash"
    );
    assert_eq!(
        metrics
            .notices_published
            .with_label_values(&["prices"])
            .get(),
        1,
        "the restarted poller did not announce the same data again"
    );
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), poller).await???;
    Ok(())
}
