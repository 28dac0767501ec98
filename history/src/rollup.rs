//! The roll-up: `1m` is what a snapshot writes, the coarser intervals are rolled up from it.
//!
//! **Why:** a snapshot of N coins written into all six intervals is 6 N row merges; into `1m`
//! alone it is N. Each store keeps one mark, `rolled_through` (Unix ms, a `1m` boundary, in
//! the `rollup` table): every sample of a minute before it is in the coarser rows too.
//!
//! - **Writes** ([`CandleStore::apply`]): the `1m` rows, and for a minute before the mark (a
//!   late sample, e.g. a ranking announced after newer prices) its coarser rows as well, in
//!   the same transaction, which reads the mark under a lock the roll-up's update waits for.
//! - **The roll-up** ([`CandleStore::rollup`], run by the recorder every
//!   `TOPCOINS_ROLLUP_EVERY`): one transaction that merges the `1m` rows of `[mark, until)`
//!   into the coarser rows and moves the mark to `until`.
//! - **Reads** of a coarser interval ([`CandleStore::range`], [`CandleStore::latest`]):
//!   the stored rows merged with the roll-up of the `1m` rows from the mark on ([`overlay`]),
//!   in one statement (or one read transaction), so every answer holds every sample
//!   committed, whenever the roll-up last ran.
//! - **Retention** never deletes a `1m` row at or after the mark.
//! - **Where the minutes are:** the `1m` rows from the mark on live in a table of their own,
//!   `minutes`, keyed by (time, coin) ([`is_unrolled_minute`]); the rest in `candles`, keyed
//!   by (coin, interval, time). A snapshot that opens a new minute then appends to one table
//!   instead of touching one page (or index leaf) per coin; a coin's few unrolled minutes are
//!   read by one key probe per minute; the roll-up moves the minutes it covers into
//!   `candles` in its transaction, so each minute is in exactly one of the two.
//!
//! The merge is a join ([`Candle::merge`]): a sample merged into a row twice (by a late
//! write and again by a roll-up, or by a read overlay over a row that already holds it)
//! changes nothing, which is what makes every step above safe to overlap or repeat.
//!
//! [`CandleStore::apply`]: crate::CandleStore::apply
//! [`CandleStore::rollup`]: crate::CandleStore::rollup
//! [`CandleStore::range`]: crate::CandleStore::range
//! [`CandleStore::latest`]: crate::CandleStore::latest

use std::collections::BTreeMap;

use compact_str::CompactString;

use crate::{Candle, Interval, Source};

/// The intervals rolled up from `1m`, finest first.
pub const COARSE: [Interval; 5] = [
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];

/// Recorded time one roll-up transaction covers at most: a roll-up that has fallen behind
/// (after failures, or a database that was written without one) goes in steps of this, each
/// committed, so no transaction holds more than this much of every coin's minutes.
pub const STEP_MS: i64 = 15 * 60_000;

/// The highest mark a store has read. The mark only moves on, so a mark seen earlier is a
/// lower bound of the current one: a range that ends before its bucket (`covers`) is complete
/// in the stored rows, and is read with the plain one-arm query (no overlay). Reads that
/// cannot tell take the overlay's statement and refresh this.
#[derive(Debug, Default)]
pub(crate) struct KnownMark(std::sync::atomic::AtomicI64);

impl KnownMark {
    /// Whether every bucket of `interval` starting before `upper` is complete in the stored
    /// rows by the mark known.
    pub(crate) fn covers(&self, interval: Interval, upper: i64) -> bool {
        let mark = self.0.load(std::sync::atomic::Ordering::Relaxed);
        mark > 0 && upper <= open_from(interval, mark)
    }

    pub(crate) fn saw(&self, mark: i64) {
        self.0.fetch_max(mark, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What one roll-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rolled {
    /// `1m` rows read.
    pub minutes: u64,
    /// Coarser rows merged into.
    pub rows: u64,
    /// The mark afterwards.
    pub through: i64,
}

/// The `1m` candles given, rolled up into each of `intervals`: one candle per (symbol,
/// interval, bucket), the merge of the minutes in it, in key order. Only recorded minutes
/// count (there are no others).
pub fn roll_up<'a>(
    minutes: impl IntoIterator<Item = &'a Candle>,
    intervals: &[Interval],
) -> Vec<Candle> {
    let mut rows: BTreeMap<(CompactString, Interval, i64), Candle> = BTreeMap::new();
    for minute in minutes {
        if minute.interval != Interval::M1 || minute.source != Source::Recorded {
            continue;
        }
        for &interval in intervals {
            let time = interval.bucket_start(minute.time);
            rows.entry((minute.symbol.clone(), interval, time))
                .and_modify(|held| {
                    let mut theirs = minute.clone();
                    theirs.interval = interval;
                    theirs.time = time;
                    held.merge(&theirs);
                })
                .or_insert_with(|| Candle {
                    interval,
                    time,
                    ..minute.clone()
                });
        }
    }
    rows.into_values().collect()
}

/// Whether a row is a minute the roll-up has not reached: both backends keep those in a
/// table of their own (`minutes`, clustered by time, so that a new minute of every coin is
/// an append), and the rest in `candles`.
pub(crate) fn is_unrolled_minute(interval: Interval, time: i64, through: i64) -> bool {
    interval == Interval::M1 && time >= through
}

/// Candles (sorted by key) split by the table they go to, given the mark: the minutes from
/// the mark on, in `minutes`' key order (time, symbol), and the rest as they were.
pub(crate) fn split_minutes(candles: Vec<Candle>, through: i64) -> (Vec<Candle>, Vec<Candle>) {
    let (mut hot, rest): (Vec<Candle>, Vec<Candle>) = candles
        .into_iter()
        .partition(|c| is_unrolled_minute(c.interval, c.time, through));
    hot.sort_by(|a, b| (a.time, &a.symbol).cmp(&(b.time, &b.symbol)));
    (hot, rest)
}

/// The start of `interval`'s bucket holding the mark: stored rows from there on may lack
/// minutes the overlay adds.
pub(crate) fn open_from(interval: Interval, through: i64) -> i64 {
    interval.bucket_start(through)
}

/// The end (excluded) of the `1m` rows a range of `interval` below `upper` may need: the end
/// of the bucket holding `upper - 1`.
pub(crate) fn minutes_upper(interval: Interval, upper: i64) -> i64 {
    if upper <= i64::MIN + interval.millis() {
        return i64::MIN;
    }
    interval
        .bucket_start(upper - 1)
        .saturating_add(interval.millis())
}

/// Stored rows of one coarser `interval` merged with the roll-up of `minutes` (the `1m` rows
/// from the mark on), by (symbol, bucket), in that order; rows without a price included.
pub(crate) fn overlay(stored: Vec<Candle>, minutes: &[Candle], interval: Interval) -> Vec<Candle> {
    let mut rows: BTreeMap<(CompactString, i64), Candle> = stored
        .into_iter()
        .filter(|c| c.interval == interval)
        .map(|c| ((c.symbol.clone(), c.time), c))
        .collect();
    for rolled in roll_up(minutes, &[interval]) {
        rows.entry((rolled.symbol.clone(), rolled.time))
            .and_modify(|held| held.merge(&rolled))
            .or_insert(rolled);
    }
    rows.into_values().collect()
}

/// A range page's rows: the overlay cut to the range's bounds, priced rows only, at most
/// `limit_plus_one`. The stored priced rows before the mark's bucket (complete, which the
/// overlay leaves as they are) were read with that limit, every stored row from the mark's
/// bucket on without one: a bucket after the last limited row is beyond the limit too, so
/// cutting here is exact.
pub(crate) fn range_rows(
    stored: Vec<Candle>,
    minutes: &[Candle],
    interval: Interval,
    lower: i64,
    upper: i64,
    limit_plus_one: i64,
) -> Vec<Candle> {
    // A range in the past (the common read): nothing to merge, the stored rows are the page.
    if minutes.is_empty()
        && stored
            .iter()
            .all(|c| c.price.is_some() && c.interval == interval)
        && stored.is_sorted_by_key(|c| c.time)
    {
        return stored;
    }
    overlay(stored, minutes, interval)
        .into_iter()
        .filter(|c| c.time >= lower && c.time < upper && c.price.is_some())
        .take(usize::try_from(limit_plus_one).unwrap_or(usize::MAX))
        .collect()
}

/// Each coin's latest priced candle of `interval`, from its latest stored priced row before
/// the mark's bucket (complete), its stored rows from the mark's bucket on (priced or not)
/// and the minutes from the mark on. The latest bucket is either before the mark's bucket or
/// at or after it (then the last two are merged, which may unprice a backfilled row a rank
/// replaced), so this is exact.
pub(crate) fn latest_rows(
    latest: Vec<Candle>,
    recent: Vec<Candle>,
    minutes: &[Candle],
    interval: Interval,
) -> Vec<Candle> {
    // Disjoint: `latest` is before the mark's bucket, `recent` from it on.
    let mut stored = latest;
    stored.extend(recent);
    let mut best: BTreeMap<CompactString, Candle> = BTreeMap::new();
    for c in overlay(stored, minutes, interval) {
        if c.price.is_some() {
            // Rows come in (symbol, time) order: the last priced one per symbol wins.
            best.insert(c.symbol.clone(), c);
        }
    }
    best.into_values().collect()
}

/// `closes_at`'s candidates of one coarser `interval` from its buckets at or after the
/// mark's (where the stored rows may lack minutes, or be a backfilled row a recorded minute
/// replaces): each coin's latest overlaid candle with a price that started and closed by
/// `at`. They are later than any candidate from the stored buckets before the mark's, so
/// where a coin has one it replaces that.
pub(crate) fn closes_rows(
    recent: Vec<Candle>,
    minutes: &[Candle],
    interval: Interval,
    at: i64,
) -> Vec<Candle> {
    let mut best: BTreeMap<CompactString, Candle> = BTreeMap::new();
    for c in overlay(recent, minutes, interval) {
        if c.time <= at && c.price.is_some_and(|p| p.close_time <= at) {
            best.insert(c.symbol.clone(), c);
        }
    }
    best.into_values().collect()
}

/// Per coin, the candidate from `later` where there is one, else the one from `earlier`.
pub(crate) fn prefer_later(earlier: Vec<Candle>, later: Vec<Candle>) -> Vec<Candle> {
    let mut by_symbol: BTreeMap<CompactString, Candle> =
        earlier.into_iter().map(|c| (c.symbol.clone(), c)).collect();
    for c in later {
        by_symbol.insert(c.symbol.clone(), c);
    }
    by_symbol.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Observation, Sample};

    fn sample(symbol: &str, time: i64, price: f64) -> Sample {
        Sample {
            symbol: symbol.into(),
            time,
            observation: Observation::Price {
                price_usd: price,
                market_cap_usd: None,
            },
        }
    }

    #[test]
    fn rolling_up_minutes_equals_folding_the_samples() {
        let samples: Vec<Sample> = (0..500)
            .map(|i| sample(["A", "B"][i % 2], i as i64 * 17_000, (i % 13) as f64))
            .collect();
        let minutes = Batch::from_samples(&samples);
        for interval in COARSE {
            let direct: Vec<Candle> = samples
                .iter()
                .fold(BTreeMap::new(), |mut rows, s| {
                    let c = Candle::of_sample(s, interval);
                    rows.entry((c.symbol.clone(), c.time))
                        .and_modify(|held: &mut Candle| held.merge(&c))
                        .or_insert(c);
                    rows
                })
                .into_values()
                .collect();
            assert_eq!(
                roll_up(minutes.candles(), &[interval]),
                direct,
                "{interval}"
            );
        }
    }

    #[test]
    fn a_range_overlay_merges_stored_and_unrolled_minutes() {
        let early = Batch::from_samples(&[sample("A", 0, 1.0), sample("A", 60_000, 5.0)]);
        let late = Batch::from_samples(&[sample("A", 120_000, 0.5), sample("A", 300_000, 2.0)]);
        let stored = roll_up(early.candles(), &[Interval::M5]);
        let rows = range_rows(stored, late.candles(), Interval::M5, 0, i64::MAX, 10);
        let ohlc: Vec<_> = rows
            .iter()
            .map(|c| {
                let p = c.price.unwrap();
                (c.time, p.open, p.high, p.low, p.close)
            })
            .collect();
        assert_eq!(
            ohlc,
            [(0, 1.0, 5.0, 0.5, 0.5), (300_000, 2.0, 2.0, 2.0, 2.0)]
        );
        // Cut to the limit and the bounds.
        let stored = roll_up(early.candles(), &[Interval::M5]);
        assert_eq!(
            range_rows(stored, late.candles(), Interval::M5, 1, i64::MAX, 10).len(),
            1
        );
        assert_eq!(minutes_upper(Interval::M5, 300_001), 600_000);
        assert_eq!(minutes_upper(Interval::M5, 300_000), 300_000);
        assert_eq!(minutes_upper(Interval::D1, i64::MAX), i64::MAX);
        assert_eq!(minutes_upper(Interval::D1, i64::MIN), i64::MIN);
    }
}
