//! Retention: candles past their interval's retention, and exchange metrics' records past
//! theirs, are deleted a little at a time.

use std::time::Duration;

use time::OffsetDateTime;
use topcoins_history::{CandleStore, RecordStore, Retention, Store};

use crate::RecorderMetrics;
use crate::record::unix_ms;

/// Sweeps every `every` until `shutdown`. Each interval is pruned in steps of at most
/// [`topcoins_history::PRUNE_STEP`] rows, each its own transaction, so the recorder's writes
/// wait for one step at most, never for a whole sweep.
pub(crate) async fn sweep_until(
    store: &Store,
    retention: &Retention,
    records: Duration,
    every: Duration,
    metrics: &RecorderMetrics,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut *shutdown => return,
            _ = tick.tick() => {}
        }
        sweep_once(
            store,
            retention,
            records,
            metrics,
            unix_ms(OffsetDateTime::now_utc()),
        )
        .await;
    }
}

/// One sweep at `now` (Unix ms): every interval's candles, then the records (counted in
/// `topcoins_recorder_pruned_total{interval="records"}`).
pub async fn sweep_once(
    store: &Store,
    retention: &Retention,
    records: Duration,
    metrics: &RecorderMetrics,
    now: i64,
) {
    let keep = i64::try_from(records.as_millis()).unwrap_or(i64::MAX);
    match store.prune_records(now.saturating_sub(keep)).await {
        Ok(0) => {}
        Ok(n) => {
            metrics.pruned.with_label_values(&["records"]).inc_by(n);
            tracing::info!(deleted = n, "retention: old metric records deleted");
        }
        Err(e) => {
            metrics.db_errors.with_label_values(&["prune"]).inc();
            tracing::warn!(error = %e, "retention: records prune failed; next sweep tries again");
        }
    }
    for (interval, keep) in retention.0 {
        let Some(keep) = keep else { continue };
        let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        match store.prune(interval, now.saturating_sub(keep)).await {
            Ok(0) => {}
            Ok(n) => {
                metrics
                    .pruned
                    .with_label_values(&[interval.as_str()])
                    .inc_by(n);
                tracing::info!(%interval, deleted = n, "retention: old candles deleted");
            }
            Err(e) => {
                metrics.db_errors.with_label_values(&["prune"]).inc();
                tracing::warn!(%interval, error = %e, "retention: prune failed; next sweep tries again");
            }
        }
    }
}
