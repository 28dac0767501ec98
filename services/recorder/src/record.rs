//! The recording loop: notice → snapshot → candles → one transaction → ack.
//!
//! Steps for each delivered notice, in stream order:
//! 1. **fetch** the snapshot it names from the store (retrying while NATS is away). One that is
//!    gone (pruned past the stream retention) or whose bytes do not match the hash is a gap:
//!    counted (`missing_snapshot`, `bad_snapshot`), logged, and discarded so it is not handed
//!    out again.
//! 2. **build** the batch: one sample per coin at the notice's `as_of`, its `1m` candle.
//! 3. **write** it in one transaction, retrying with backoff while the database is down, and
//!    telling NATS the notice is still in hand so it is not handed out meanwhile. Notices
//!    already waiting when the recorder takes one join it, and their batches are merged and
//!    written as one ([`Batch::absorb`]): behind, the recorder catches up a group at a time.
//! 4. **ack**, and only then take the next notice. A crash between 3 and 4 means the notice
//!    is delivered again and written again, which changes nothing (writes are idempotent).
//!
//! **Exchange metrics.** A ticker kind's hash notice and its *still-current* notices (a poll
//! that found the data unchanged says so on `topcoins.v1.<kind>.current`, with the same hash
//! and the poll's time: see `SnapshotStore::confirm`) each become one record per metric at
//! the notice's `as_of` — one sample per poll, unchanged polls included. The snapshot a
//! still-current notice names is the one already fetched for the kind, kept decoded here, so
//! an unchanged poll costs no fetch. Written in the group's transaction order after the
//! candles; idempotent likewise (a record is keyed by metric and time).
//!
//! 5. **roll up**, once `rollup_every` of recorded time has passed since the last roll-up:
//!    the `1m` rows of the minutes before the newest notice's are merged into the coarser
//!    intervals ([`topcoins_history::rollup`]). Off the notice path (after the acks); a
//!    failed roll-up is tried again after the next write, and loses nothing meanwhile (reads
//!    merge the minutes not rolled up).

use std::time::{Duration, Instant};

use futures::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use topcoins_bus::{Delivery, DurableNotices, SnapshotStore, StoreErrorKind};

use compact_str::CompactString;
use topcoins_history::{Batch, CandleStore, Record, RecordStore, Store};
use topcoins_runtime::Backoff;
use topcoins_schemas::ticker::TICKER_KINDS;
use topcoins_schemas::{
    Kind, MetricKind, PriceSnapshot, RankingSnapshot, Snapshot, SnapshotError, SnapshotHash,
};

use crate::RecorderMetrics;

/// The kinds the recorder records: candles of prices and ranking, records of the tickers.
pub const RECORDED_KINDS: &[Kind] = &[
    Kind::PRICES,
    Kind::RANKING,
    TICKER_KINDS[0],
    TICKER_KINDS[1],
    TICKER_KINDS[2],
];

/// The kinds whose still-current notices the recorder reads too (one record per poll).
pub const CONFIRMED_KINDS: &[Kind] = &TICKER_KINDS;

/// One ticker snapshot's metrics: `(id, value)` for every pair and metric kind.
type Metrics = Arc<Vec<(CompactString, f64)>>;

/// The metrics of a ticker snapshot of `kind`, or `None` if `kind` is not a ticker kind.
fn ticker_metrics(kind: Kind, bytes: &[u8]) -> Option<Result<Metrics, SnapshotError>> {
    let decoded = topcoins_schemas::ticker::decode_tickers(kind, bytes)?;
    Some(decoded.map(|(exchange, tickers)| {
        Arc::new(
            tickers
                .iter()
                .flat_map(|t| {
                    MetricKind::ALL.into_iter().map(move |k| {
                        (
                            compact_str::format_compact!("{exchange}:{}:{}", t.pair, k.as_str()),
                            t.value(k),
                        )
                    })
                })
                .collect(),
        )
    }))
}

/// Waits between tries of the database or the store: 100 ms doubling to 5 s, jittered.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What recording one notice came to.
#[derive(Clone, Copy)]
enum Outcome {
    /// Its batch, of this many rows, is in the group's write.
    Recorded(usize),
    Ignored,
    Missing,
    Bad,
}

pub(crate) struct Recorder<'a> {
    pub store: &'a Store,
    pub snapshots: &'a SnapshotStore,
    pub metrics: &'a RecorderMetrics,
    /// The ranking, in order, as each ranking notice brings it (for backfill).
    pub ranking: &'a tokio::sync::watch::Sender<Vec<String>>,
    /// Recorded time between two roll-ups, ms.
    pub rollup_every: i64,
    /// Each ticker kind's last snapshot, decoded: what its still-current notices name.
    pub tickers: Mutex<HashMap<Kind, (SnapshotHash, Metrics)>>,
}

/// Tries of a snapshot the store says it does not have before it counts as gone (about 3 s
/// with [`RETRY`]).
const NOT_FOUND_TRIES: u32 = 5;

/// Notices written together at most: what is waiting when the recorder is ready for more
/// (after an absence, or behind a slow write) goes into one transaction, so catching up
/// costs one snapshot's rows per write rather than per snapshot. Below the consumer's
/// `max_ack_pending`, so a group never waits for notices the server holds back.
const MAX_GROUP: usize = 32;

/// A delivery on its way to the database.
struct Taken {
    delivery: Delivery,
    outcome: Outcome,
}

impl Recorder<'_> {
    /// Records notices until `shutdown` fires (`true`) or the consumer ends (`false`).
    pub async fn run(
        &self,
        mut notices: DurableNotices,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> bool {
        // The newest `as_of` written, and the minute the last roll-up reached.
        let mut newest = i64::MIN;
        let mut rolled = i64::MIN;
        loop {
            let first = tokio::select! {
                _ = &mut *shutdown => return true,
                next = notices.next() => next,
            };
            let Some(first) = first else { return false };
            // What else is already here joins the group.
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match notices.next().now_or_never() {
                    Some(Some(next)) => group.push(next),
                    _ => break,
                }
            }
            let mut taken = Vec::with_capacity(group.len());
            let mut batch = Batch::default();
            let mut records = Vec::new();
            for delivery in group {
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(discarded) => {
                        let kind = match &discarded.0 {
                            topcoins_bus::Rejected::Undecodable { kind: Some(k), .. } => k.as_str(),
                            _ => "unknown",
                        };
                        tracing::warn!(error = %discarded.0, "recorder: not a notice, discarded");
                        self.count(kind, "bad_notice");
                        continue;
                    }
                };
                if delivery.delivered > 1 {
                    self.metrics
                        .redelivered
                        .with_label_values(&[delivery.kind.as_str()])
                        .inc();
                }
                let outcome = match self.prepare(&delivery, shutdown).await {
                    Prepared::Stopped => return true,
                    Prepared::Done(outcome) => outcome,
                    Prepared::Batch(one) => {
                        let rows = one.len();
                        batch.absorb(one);
                        Outcome::Recorded(rows)
                    }
                    Prepared::Records(one) => {
                        let rows = one.len();
                        records.extend(one);
                        Outcome::Recorded(rows)
                    }
                };
                taken.push(Taken { delivery, outcome });
            }
            let wrote = !batch.is_empty();
            if (wrote || !records.is_empty()) && !self.write(batch, records, &taken, shutdown).await
            {
                return true;
            }
            for t in &taken {
                if matches!(t.outcome, Outcome::Recorded(_))
                    && !CONFIRMED_KINDS.contains(&t.delivery.kind)
                {
                    newest = newest.max(unix_ms(t.delivery.notice.as_of));
                }
            }
            for Taken { delivery, outcome } in taken {
                let kind = delivery.kind.as_str();
                match outcome {
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
                        let lag =
                            (OffsetDateTime::now_utc() - delivery.notice.as_of).as_seconds_f64();
                        self.metrics
                            .lag
                            .with_label_values(&[kind])
                            .observe(lag.max(0.0));
                        tracing::debug!(
                            kind,
                            sequence = delivery.sequence,
                            lag_ms = lag * 1e3,
                            "recorder: recorded"
                        );
                    }
                    _ => delivery.discard().await,
                }
            }
            if wrote && newest != i64::MIN {
                // Never past the present: one notice stamped in the future (a publisher's
                // clock) must not move the mark ahead, which would make every later
                // snapshot a late one, written into all six intervals.
                let now = unix_ms(OffsetDateTime::now_utc());
                let until = topcoins_history::Interval::M1.bucket_start(newest.min(now));
                let due = rolled == i64::MIN || until.saturating_sub(rolled) >= self.rollup_every;
                if due && let Some(through) = self.rollup(until).await {
                    rolled = through.max(until);
                }
            }
        }
    }

    /// Step 5: one roll-up up to `until`; the mark after it, or `None` if it failed.
    async fn rollup(&self, until: i64) -> Option<i64> {
        let backend = self.store.backend();
        let started = Instant::now();
        match self.store.rollup(until).await {
            Ok(done) => {
                self.metrics
                    .rollup
                    .with_label_values(&[backend])
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.rolled_up.inc_by(done.rows);
                tracing::debug!(
                    minutes = done.minutes,
                    rows = done.rows,
                    through = done.through,
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "recorder: rolled up"
                );
                Some(done.through)
            }
            Err(e) => {
                self.metrics.db_errors.with_label_values(&["rollup"]).inc();
                tracing::warn!(error = %e, "recorder: roll-up failed; tried again after the next write");
                None
            }
        }
    }

    fn count(&self, kind: &str, outcome: &str) {
        self.metrics
            .notices
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// Steps 1 and 2 for one notice: its snapshot fetched and made a batch.
    async fn prepare(
        &self,
        delivery: &Delivery,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Prepared {
        if !RECORDED_KINDS.contains(&delivery.kind) {
            return Prepared::Done(Outcome::Ignored);
        }
        let hash = delivery.notice.hash;
        let as_of = unix_ms(delivery.notice.as_of);
        let held = self
            .tickers
            .lock()
            .expect("not poisoned")
            .get(&delivery.kind)
            .filter(|(h, _)| *h == hash)
            .map(|(_, m)| m.clone());
        if let Some(metrics) = held {
            return Prepared::Records(records_at(&metrics, as_of));
        }
        // 1. fetch
        let mut backoff = RETRY;
        let bytes = loop {
            match self.snapshots.fetch(hash).await {
                Ok(bytes) => break bytes,
                // A replica that has not caught up may not have it yet: a few tries first.
                Err(e)
                    if e.kind() == StoreErrorKind::NotFound
                        && backoff.attempt() < NOT_FOUND_TRIES =>
                {
                    tokio::select! {
                        _ = &mut *shutdown => return Prepared::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    tracing::error!(kind = %delivery.kind, %hash, sequence = delivery.sequence,
                        "recorder: the snapshot of a notice is gone (away longer than the stream retention?): a gap in the record");
                    return Prepared::Done(Outcome::Missing);
                }
                Err(e) if e.kind() == StoreErrorKind::HashMismatch => {
                    tracing::error!(kind = %delivery.kind, %hash, error = %e, "recorder: stored snapshot does not match its hash");
                    return Prepared::Done(Outcome::Bad);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recorder: snapshot store unavailable; retrying");
                    delivery.in_progress().await;
                    tokio::select! {
                        _ = &mut *shutdown => return Prepared::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        };
        // 2. build
        if let Some(decoded) = ticker_metrics(delivery.kind, &bytes) {
            return match decoded {
                Ok(metrics) => {
                    let records = records_at(&metrics, as_of);
                    self.tickers
                        .lock()
                        .expect("not poisoned")
                        .insert(delivery.kind, (hash, metrics));
                    Prepared::Records(records)
                }
                Err(e) => {
                    tracing::error!(kind = %delivery.kind, %hash, error = %e, "recorder: ticker snapshot does not decode");
                    Prepared::Done(Outcome::Bad)
                }
            };
        }
        if delivery.kind == Kind::PRICES {
            match PriceSnapshot::decode(&bytes) {
                Ok(snapshot) => Prepared::Batch(Batch::from_prices(&snapshot, as_of)),
                Err(e) => {
                    tracing::error!(%hash, error = %e, "recorder: price snapshot does not decode");
                    Prepared::Done(Outcome::Bad)
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
                    Prepared::Batch(Batch::from_ranking(&snapshot, as_of))
                }
                Err(e) => {
                    tracing::error!(%hash, error = %e, "recorder: ranking snapshot does not decode");
                    Prepared::Done(Outcome::Bad)
                }
            }
        }
    }

    /// Step 3: the group's batch in one transaction, retried while the database is down
    /// (the notices stay in hand). `false` if shutdown came first.
    async fn write(
        &self,
        batch: Batch,
        records: Vec<Record>,
        taken: &[Taken],
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> bool {
        let backend = self.store.backend();
        let mut backoff = RETRY;
        loop {
            let started = Instant::now();
            let written = async {
                if !batch.is_empty() {
                    self.store.apply(batch.clone()).await?;
                }
                self.store.write_records(records.clone()).await
            };
            match written.await {
                Ok(()) => {
                    self.metrics
                        .write
                        .with_label_values(&[backend])
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.db_up.with_label_values(&[backend]).set(1);
                    return true;
                }
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["apply"]).inc();
                    self.metrics.db_up.with_label_values(&[backend]).set(0);
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, wait = ?wait, notices = taken.len(),
                        "recorder: database write failed; retrying (the notices stay in hand)");
                    for t in taken {
                        t.delivery.in_progress().await;
                    }
                    tokio::select! {
                        _ = &mut *shutdown => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// A ticker snapshot's metrics as records at `time`.
fn records_at(metrics: &[(CompactString, f64)], time: i64) -> Vec<Record> {
    metrics
        .iter()
        .map(|(metric, value)| Record {
            metric: metric.clone(),
            time,
            value: *value,
        })
        .collect()
}

/// What preparing one notice came to.
enum Prepared {
    Batch(Batch),
    Records(Vec<Record>),
    Done(Outcome),
    Stopped,
}

/// Unix milliseconds of a time.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
