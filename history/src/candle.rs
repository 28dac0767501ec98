//! Candles and the one rule that folds a sample into them.
//!
//! **The merge is a join:** a candle is a function of the *set* of samples applied to it,
//! whatever their order and however often each one comes. `open` is the price of the
//! earliest sample, `close` (with the market cap) that of the latest, `high`/`low` the
//! extremes; rank and 24 h volume are those of the latest ranking sample. Samples of the same
//! time are ordered by their values (a total order on finite floats), so even two different
//! samples stamped with one time give one answer. Both backends write this rule in SQL
//! (`ON CONFLICT … DO UPDATE`); [`Candle::merge`] is the reference the tests hold them to.

use compact_str::CompactString;

use crate::{Error, Interval};

/// Who made a candle. Stored as a small integer (`code`): recorded rows are most rows, and a
/// text column would cost every one of them bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Folded from our own snapshots by the recorder.
    Recorded,
    /// Kept as CryptoCompare's `histo*` endpoints gave it (backfill).
    CryptoCompare,
}

impl Source {
    pub const fn code(self) -> i16 {
        match self {
            Source::Recorded => 0,
            Source::CryptoCompare => 1,
        }
    }

    pub fn from_code(code: i16) -> Result<Self, Error> {
        match code {
            0 => Ok(Source::Recorded),
            1 => Ok(Source::CryptoCompare),
            other => Err(Error::Corrupt(format!("unknown source code {other}"))),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Recorded => "recorded",
            Source::CryptoCompare => "cryptocompare",
        }
    }
}

/// What one snapshot says about one coin at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The coin's symbol in upper case: candles are keyed by symbol (see the crate docs).
    pub symbol: CompactString,
    /// When the snapshot was observed (its notice's `as_of`), Unix ms.
    pub time: i64,
    pub observation: Observation,
}

/// The two kinds of snapshot a sample comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// From a price snapshot: moves the OHLC.
    Price {
        price_usd: f64,
        market_cap_usd: Option<f64>,
    },
    /// From a ranking snapshot: the rank (position + 1) and the 24 h volume.
    Rank {
        rank: u32,
        volume_24h_usd: Option<f64>,
    },
}

/// Open, high, low and close of `price_usd`, with the times of the samples that opened and
/// closed the candle (what later samples are compared with).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ohlc {
    pub open_time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close_time: i64,
    pub close: f64,
    /// Market cap of the closing sample.
    pub market_cap_usd: Option<f64>,
}

/// Rank and 24 h volume of the latest ranking sample in the bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub time: i64,
    pub rank: u32,
    pub volume_24h_usd: Option<f64>,
}

/// One row: a coin's candle of one interval in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub symbol: CompactString,
    pub interval: Interval,
    /// The bucket's start, Unix ms, aligned to `interval` in UTC.
    pub time: i64,
    pub source: Source,
    /// `None` while only ranking samples fell in the bucket; such rows are never returned by
    /// queries (a candle without a price is no candle), but they keep the rank until one comes.
    pub price: Option<Ohlc>,
    pub ranked: Option<Ranked>,
    /// Base and quote volume as the provider gave them (backfilled rows only).
    pub volume_from: Option<f64>,
    pub volume_to: Option<f64>,
}

/// `None` below every value, as the SQL writes it (`coalesce(x, -1)`; amounts are ≥ 0).
fn key(v: Option<f64>) -> f64 {
    v.unwrap_or(-1.0)
}

fn later(a: (i64, f64, f64), b: (i64, f64, f64)) -> bool {
    a.0.cmp(&b.0)
        .then(a.1.total_cmp(&b.1))
        .then(a.2.total_cmp(&b.2))
        .is_gt()
}

impl Ohlc {
    pub fn of(time: i64, price_usd: f64, market_cap_usd: Option<f64>) -> Self {
        Ohlc {
            open_time: time,
            open: price_usd,
            high: price_usd,
            low: price_usd,
            close_time: time,
            close: price_usd,
            market_cap_usd,
        }
    }

    /// The join of two OHLCs of one bucket.
    pub fn merge(&mut self, other: &Ohlc) {
        if (other.open_time, other.open) < (self.open_time, self.open) {
            // Row values compare like tuples in SQL; `<` on (i64, f64) is the same for the
            // finite prices a snapshot holds.
            self.open_time = other.open_time;
            self.open = other.open;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        let theirs = (other.close_time, other.close, key(other.market_cap_usd));
        let ours = (self.close_time, self.close, key(self.market_cap_usd));
        if later(theirs, ours) {
            self.close_time = other.close_time;
            self.close = other.close;
            self.market_cap_usd = other.market_cap_usd;
        }
    }
}

impl Ranked {
    pub fn merge(&mut self, other: &Ranked) {
        let theirs = (other.time, f64::from(other.rank), key(other.volume_24h_usd));
        let ours = (self.time, f64::from(self.rank), key(self.volume_24h_usd));
        if later(theirs, ours) {
            *self = *other;
        }
    }
}

impl Candle {
    /// The candle of one sample alone, in `interval`'s bucket that holds it.
    pub fn of_sample(sample: &Sample, interval: Interval) -> Self {
        let (price, ranked) = match sample.observation {
            Observation::Price {
                price_usd,
                market_cap_usd,
            } => (Some(Ohlc::of(sample.time, price_usd, market_cap_usd)), None),
            Observation::Rank {
                rank,
                volume_24h_usd,
            } => (
                None,
                Some(Ranked {
                    time: sample.time,
                    rank,
                    volume_24h_usd,
                }),
            ),
        };
        Candle {
            symbol: sample.symbol.clone(),
            interval,
            time: interval.bucket_start(sample.time),
            source: Source::Recorded,
            price,
            ranked,
            volume_from: None,
            volume_to: None,
        }
    }

    /// Folds a recorded candle of the same key into this one: what the stores' upserts do.
    /// A recorded candle replaces a backfilled one whole (recorded wins its bucket); a
    /// backfilled one never changes a recorded one.
    pub fn merge(&mut self, other: &Candle) {
        debug_assert_eq!(
            (&self.symbol, self.interval, self.time),
            (&other.symbol, other.interval, other.time)
        );
        match (self.source, other.source) {
            (Source::Recorded, Source::Recorded) => {}
            (_, Source::Recorded) => {
                *self = other.clone();
                return;
            }
            (Source::Recorded, _) => return,
            (_, _) => {
                *self = other.clone();
                return;
            }
        }
        self.price = match (self.price, other.price) {
            (Some(mut a), Some(b)) => {
                a.merge(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.ranked = match (self.ranked, other.ranked) {
            (Some(mut a), Some(b)) => {
                a.merge(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests;
