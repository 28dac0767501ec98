//! `topcoins recorder`: the record of prices. It consumes the price and ranking notices
//! durably (a JetStream durable consumer, see [`topcoins_bus::durable`]), writes each
//! snapshot's candles at every interval into the database in one transaction, acknowledges
//! the notice only after the commit, and deletes candles past their retention.
//!
//! - `config`: [`RecorderConfig`] (`TOPCOINS_STREAM_RETENTION`, `TOPCOINS_CANDLE_RETENTION`, …).
//! - `record`: the loop notice → snapshot → batch → write → ack; for exchange tickers, one
//!   record per metric per poll, from their hash notices and their still-current notices.
//! - `sweep`: retention.
//! - backfill: each new ranking starts a [`Backfill`] run for its top coins
//!   (`topcoins-backfill`: CryptoCompare's `histoday`/`histohour`).
//! - `metrics`: [`RecorderMetrics`].
//!
//! **Nothing lost, nothing twice.** A recorder killed at any point is handed every notice it
//! did not acknowledge again when it is back; one it had written but not acknowledged is
//! written again, which changes no row (a candle is the join of its samples, see
//! [`topcoins_history::Candle::merge`]). While the database is down the recorder holds the
//! notice, retries with backoff, and tells NATS it is still working on it; the notices behind
//! it wait in the record stream. Within the stream retention (default 24 h) the bus keeps
//! every notice and snapshot the recorder has not acknowledged.

pub mod config;
pub mod metrics;
mod record;
mod sweep;

use std::future::Future;
use std::time::Duration;

use prometheus::Registry;
use topcoins_backfill::Backfill;
use topcoins_bus::{DurableNotices, NatsConfig, SnapshotStore};
use topcoins_history::{CandleStore, DatabaseUrl, Store};
use topcoins_runtime::{Backoff, retry_until_shutdown};

pub use config::{CandleRetention, RecorderConfig};
pub use metrics::RecorderMetrics;
pub use record::{CONFIRMED_KINDS, RECORDED_KINDS, unix_ms};
pub use sweep::sweep_once;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the recorder's consumer ended (deleted?); restart to recreate it")]
    ConsumerEnded,
}

/// Waits between tries of opening the database or the consumer.
const OPEN_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Runs the recorder until `shutdown`: waits for the database (and migrates it) and for NATS,
/// then records notices and sweeps retention side by side.
///
/// With `backfill`, each new ranking the recorder takes in starts a backfill run for its top
/// coins (one run at a time; a run with nothing due calls nothing), so a fresh install has
/// a year of daily candles in the first minute and a coin entering the top set gets its
/// history.
pub async fn run(
    config: RecorderConfig,
    database: DatabaseUrl,
    nats: NatsConfig,
    registry: Registry,
    backfill: Option<Backfill>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RecorderError> {
    let metrics = RecorderMetrics::register(&registry)?;
    let mut shutdown = Box::pin(shutdown);
    let Some(store) = retry_until_shutdown("database", OPEN_BACKOFF, &mut shutdown, || async {
        let opened = async {
            let store = Store::open(&database).await?;
            store.migrate().await?;
            Ok::<_, topcoins_history::Error>(store)
        }
        .await;
        if opened.is_err() {
            metrics.db_errors.with_label_values(&["open"]).inc();
        }
        opened
    })
    .await
    else {
        return Ok(());
    };
    tracing::info!(%database, backend = store.backend(), "recorder: database ready");
    metrics.db_up.with_label_values(&[store.backend()]).set(1);
    let (client, _link) = topcoins_bus::connect(&nats).await?;
    let Some(snapshots) =
        SnapshotStore::open_when_ready(&client, nats.stream_replicas, &mut shutdown).await
    else {
        return Ok(());
    };
    let Some(notices) =
        retry_until_shutdown("recorder consumer", OPEN_BACKOFF, &mut shutdown, || {
            DurableNotices::open(
                &snapshots,
                RECORDED_KINDS,
                CONFIRMED_KINDS,
                config.stream_retention,
                config.ack_wait,
            )
        })
        .await
    else {
        return Ok(());
    };
    tracing::info!(
        stream_retention = ?config.stream_retention,
        "recorder: consuming notices"
    );
    let (ranking, _) = tokio::sync::watch::channel(Vec::new());
    let recorder = record::Recorder {
        store: &store,
        snapshots: &snapshots,
        metrics: &metrics,
        ranking: &ranking,
        tickers: Default::default(),
        rollup_every: i64::try_from(config.rollup_every.as_millis()).unwrap_or(i64::MAX),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stop_recording = wait_for(stopped.clone());
    let mut stop_sweeping = wait_for(stopped.clone());
    let top = ranking.subscribe();
    let retention = config.candle_retention.0.clone();
    let stop_others = stop.clone();
    let work = async {
        tokio::join!(
            async {
                let stopped = recorder.run(notices, &mut stop_recording).await;
                // The consumer gone (deleted by an operator, say): stop the rest too, and
                // fail, so the process is restarted rather than healthy and recording nothing.
                let _ = stop_others.send(true);
                stopped
            },
            sweep::sweep_until(
                &store,
                &retention,
                config.record_retention,
                config.sweep_every,
                &metrics,
                &mut stop_sweeping
            ),
            backfill_on_ranking(backfill.as_ref(), &store, top, stopped),
        )
    };
    tokio::pin!(work);
    let (recorded, _, _) = tokio::select! {
        done = &mut work => done,
        _ = &mut shutdown => {
            let _ = stop.send(true);
            work.await
        }
    };
    topcoins_bus::close(&client).await;
    if recorded {
        Ok(())
    } else {
        Err(RecorderError::ConsumerEnded)
    }
}

/// Runs the backfill for each new ranking's top coins until `stopped`.
async fn backfill_on_ranking(
    backfill: Option<&Backfill>,
    store: &Store,
    mut top: tokio::sync::watch::Receiver<Vec<String>>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Some(backfill) = backfill else { return };
    let mut stop = wait_for(stopped.clone());
    loop {
        tokio::select! {
            _ = &mut stop => return,
            changed = top.changed() => if changed.is_err() { return },
        }
        let coins = top.borrow_and_update().clone();
        if coins.is_empty() {
            continue;
        }
        let report = backfill.run(store, &coins, wait_for(stopped.clone())).await;
        if report.calls > 0 || report.stopped.is_some() {
            tracing::info!(
                calls = report.calls,
                candles = report.candles,
                zero_filled = report.zero_filled,
                up_to_date = report.up_to_date,
                pending = report.pending,
                failures = report.failures.len(),
                stopped = ?report.stopped,
                "backfill run"
            );
        }
        if *stopped.borrow() {
            return;
        }
    }
}

/// A future that completes once `stopped` turns true.
fn wait_for(
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let _ = stopped.wait_for(|s| *s).await;
    })
}
