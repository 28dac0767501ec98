//! The recording loop: notice → snapshot → candles → one transaction → ack.
//!
//! Steps for each delivered notice, in stream order:
//! 1. **fetch** the snapshot it names from the store (retrying while NATS is away). One that is
//!    gone (pruned past the stream retention) or whose bytes do not match the hash is a gap:
//!    counted (`missing_snapshot`, `bad_snapshot`), logged, and discarded so it is not handed
//!    out again.
//! 2. **build** the batch: one sample per coin at the notice's `as_of`, one candle per interval.
//! 3. **write** it in one transaction, retrying with backoff while the database is down, and
//!    telling NATS the notice is still in hand so it is not handed out meanwhile.
//! 4. **ack**, and only then take the next notice. A crash between 3 and 4 means the notice
//!    is delivered again and written again, which changes nothing (writes are idempotent).

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use topcoins_bus::{Delivery, DurableNotices, SnapshotStore, StoreErrorKind};
use topcoins_history::{Batch, CandleStore, Store};
use topcoins_runtime::Backoff;
use topcoins_schemas::{Kind, PriceSnapshot, RankingSnapshot, Snapshot};

use crate::RecorderMetrics;

/// The kinds the recorder makes candles of.
pub const RECORDED_KINDS: &[Kind] = &[Kind::PRICES, Kind::RANKING];

/// Waits between tries of the database or the store: 100 ms doubling to 5 s, jittered.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What recording one notice came to.
enum Outcome {
    Recorded(usize),
    Ignored,
    Missing,
    Bad,
    /// Shutdown came while waiting; the notice stays unacknowledged.
    Stopped,
}

pub(crate) struct Recorder<'a> {
    pub store: &'a Store,
    pub snapshots: &'a SnapshotStore,
    pub metrics: &'a RecorderMetrics,
    /// The ranking, in order, as each ranking notice brings it (for backfill).
    pub ranking: &'a tokio::sync::watch::Sender<Vec<String>>,
}

impl Recorder<'_> {
    /// Records notices until `shutdown` fires or the consumer ends.
    pub async fn run(
        &self,
        mut notices: DurableNotices,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) {
        loop {
            let delivery = tokio::select! {
                _ = &mut *shutdown => return,
                next = notices.next() => next,
            };
            let delivery = match delivery {
                None => return,
                Some(Ok(delivery)) => delivery,
                Some(Err(discarded)) => {
                    let kind = match &discarded.0 {
                        topcoins_bus::Rejected::Undecodable { kind: Some(k), .. } => k.as_str(),
                        _ => "unknown",
                    };
                    tracing::warn!(error = %discarded.0, "recorder: not a notice, discarded");
                    self.count(kind, "bad_notice");
                    continue;
                }
            };
            let kind = delivery.kind.as_str();
            if delivery.delivered > 1 {
                self.metrics.redelivered.with_label_values(&[kind]).inc();
            }
            let outcome = self.record(&delivery, shutdown).await;
            match outcome {
                Outcome::Stopped => return,
                Outcome::Recorded(rows) => {
                    self.metrics
                        .candles
                        .with_label_values(&[kind])
                        .inc_by(rows as u64);
                    self.count(kind, "recorded");
                }
                Outcome::Ignored => self.count(kind, "ignored"),
                Outcome::Missing => self.count(kind, "missing_snapshot"),
                Outcome::Bad => self.count(kind, "bad_snapshot"),
            }
            match outcome {
                Outcome::Recorded(_) | Outcome::Ignored => {
                    // Not confirmed: the notice comes again and is written again, harmlessly.
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, sequence = delivery.sequence, "recorder: ack failed");
                    }
                    let lag = (OffsetDateTime::now_utc() - delivery.notice.as_of).as_seconds_f64();
                    self.metrics
                        .lag
                        .with_label_values(&[kind])
                        .observe(lag.max(0.0));
                }
                _ => delivery.discard().await,
            }
        }
    }

    fn count(&self, kind: &str, outcome: &str) {
        self.metrics
            .notices
            .with_label_values(&[kind, outcome])
            .inc();
    }

    async fn record(
        &self,
        delivery: &Delivery,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Outcome {
        if !RECORDED_KINDS.contains(&delivery.kind) {
            return Outcome::Ignored;
        }
        let hash = delivery.notice.hash;
        // 1. fetch
        let mut backoff = RETRY;
        let bytes = loop {
            match self.snapshots.fetch(hash).await {
                Ok(bytes) => break bytes,
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    tracing::error!(kind = %delivery.kind, %hash, sequence = delivery.sequence,
                        "recorder: the snapshot of a notice is gone (away longer than the stream retention?): a gap in the record");
                    return Outcome::Missing;
                }
                Err(e) if e.kind() == StoreErrorKind::HashMismatch => {
                    tracing::error!(kind = %delivery.kind, %hash, error = %e, "recorder: stored snapshot does not match its hash");
                    return Outcome::Bad;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recorder: snapshot store unavailable; retrying");
                    delivery.in_progress().await;
                    tokio::select! {
                        _ = &mut *shutdown => return Outcome::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        };
        // 2. build
        let as_of = unix_ms(delivery.notice.as_of);
        let batch = if delivery.kind == Kind::PRICES {
            match PriceSnapshot::decode(&bytes) {
                Ok(snapshot) => Batch::from_prices(&snapshot, as_of),
                Err(e) => {
                    tracing::error!(%hash, error = %e, "recorder: price snapshot does not decode");
                    return Outcome::Bad;
                }
            }
        } else {
            match RankingSnapshot::decode(&bytes) {
                Ok(snapshot) => {
                    let order: Vec<String> = snapshot
                        .coins
                        .iter()
                        .map(|c| c.symbol.to_string())
                        .collect();
                    self.ranking.send_replace(order);
                    Batch::from_ranking(&snapshot, as_of)
                }
                Err(e) => {
                    tracing::error!(%hash, error = %e, "recorder: ranking snapshot does not decode");
                    return Outcome::Bad;
                }
            }
        };
        // 3. write
        let rows = batch.len();
        let backend = self.store.backend();
        let mut backoff = RETRY;
        loop {
            let started = Instant::now();
            match self.store.apply(batch.clone()).await {
                Ok(()) => {
                    self.metrics
                        .write
                        .with_label_values(&[backend])
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.db_up.with_label_values(&[backend]).set(1);
                    return Outcome::Recorded(rows);
                }
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["apply"]).inc();
                    self.metrics.db_up.with_label_values(&[backend]).set(0);
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, wait = ?wait, sequence = delivery.sequence,
                        "recorder: database write failed; retrying (the notice stays in hand)");
                    delivery.in_progress().await;
                    tokio::select! {
                        _ = &mut *shutdown => return Outcome::Stopped,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// Unix milliseconds of a time.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
