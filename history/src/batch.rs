//! A batch: the `1m` candles one snapshot makes, ready for one write.
//!
//! A snapshot becomes one sample per coin symbol, and each sample one `1m` candle. The
//! coarser intervals are the roll-up of the `1m` candles ([`crate::rollup`]): the merge is
//! associative, so rolling up the minutes equals folding the samples into each interval
//! directly ([`Batch::every_interval`] is that fold, the reference the stores are held to).
//! Samples of one batch that land on the same row are merged here first, so a batch holds
//! each key once — what PostgreSQL's `INSERT … ON CONFLICT DO UPDATE` needs (it refuses to
//! touch a row twice in one statement), and fewer statements for SQLite.

use std::collections::HashMap;

use compact_str::CompactString;
use topcoins_schemas::{PriceSnapshot, RankingSnapshot};

use crate::rollup::{COARSE, roll_up};
use crate::{Candle, Interval, Observation, Sample};

/// Recorded `1m` candles, one per (symbol, bucket), sorted by that key (one lock order for
/// every writer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    candles: Vec<Candle>,
}

/// The key candles are stored under: the symbol in upper case, as [`Caseless`] compares it.
///
/// [`Caseless`]: topcoins_schemas::Caseless
pub fn symbol_key(symbol: &str) -> CompactString {
    if symbol.bytes().any(|b| b.is_ascii_lowercase()) || !symbol.is_ascii() {
        CompactString::from(symbol.to_uppercase())
    } else {
        CompactString::from(symbol)
    }
}

/// The key a batch is sorted by and unique in.
fn key(c: &Candle) -> (&CompactString, Interval, i64) {
    (&c.symbol, c.interval, c.time)
}

impl Batch {
    /// Folds samples into `1m` candles.
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut rows: HashMap<(CompactString, Interval, i64), Candle> = HashMap::new();
        for sample in samples {
            let sample = Sample {
                symbol: symbol_key(&sample.symbol),
                ..sample.clone()
            };
            let candle = Candle::of_sample(&sample, Interval::M1);
            rows.entry((candle.symbol.clone(), Interval::M1, candle.time))
                .and_modify(|held| held.merge(&candle))
                .or_insert(candle);
        }
        let mut candles: Vec<Candle> = rows.into_values().collect();
        candles.sort_by(|a, b| key(a).cmp(&key(b)));
        Batch { candles }
    }

    /// Samples with one per symbol (what a snapshot gives): each makes its candle directly,
    /// no two of them on one row, so no merge is needed. Sorting the samples by symbol first
    /// leaves the candles in key order.
    fn from_unique(mut samples: Vec<Sample>) -> Self {
        samples.sort_unstable_by(|a, b| a.symbol.cmp(&b.symbol));
        let candles: Vec<Candle> = samples
            .iter()
            .map(|sample| Candle::of_sample(sample, Interval::M1))
            .collect();
        debug_assert!(candles.windows(2).all(|w| key(&w[0]) < key(&w[1])));
        Batch { candles }
    }

    /// A price snapshot observed at `as_of` (Unix ms). Where several coins share a symbol the
    /// one [`PriceSnapshot::by_symbol`] names is recorded (largest market cap).
    pub fn from_prices(snapshot: &PriceSnapshot, as_of: i64) -> Self {
        let samples: Vec<Sample> = snapshot
            .symbol_index()
            .into_values()
            .map(|coin| Sample {
                symbol: symbol_key(&coin.symbol),
                time: as_of,
                observation: Observation::Price {
                    price_usd: coin.price_usd,
                    market_cap_usd: coin.market_cap_usd,
                },
            })
            .collect();
        Self::from_unique(samples)
    }

    /// A ranking snapshot observed at `as_of`: rank = position + 1. Where several coins share
    /// a symbol the best ranked one is recorded.
    pub fn from_ranking(snapshot: &RankingSnapshot, as_of: i64) -> Self {
        let mut seen = std::collections::HashSet::with_capacity(snapshot.coins.len());
        let samples: Vec<Sample> = snapshot
            .coins
            .iter()
            .enumerate()
            .filter_map(|(position, coin)| {
                let symbol = symbol_key(&coin.symbol);
                seen.insert(symbol.clone()).then(|| Sample {
                    symbol,
                    time: as_of,
                    observation: Observation::Rank {
                        rank: u32::try_from(position + 1).unwrap_or(u32::MAX),
                        volume_24h_usd: coin.volume_24h_usd,
                    },
                })
            })
            .collect();
        Self::from_unique(samples)
    }

    /// Folds `other` into this batch: rows of the same key are merged, the result is still
    /// sorted with unique keys. The recorder writes the snapshots that are waiting as one
    /// batch (one transaction for all of them), so a recorder that fell behind catches up
    /// at the cost of one snapshot per write, not one per snapshot.
    pub fn absorb(&mut self, other: Batch) {
        if other.candles.is_empty() {
            return;
        }
        if self.candles.is_empty() {
            *self = other;
            return;
        }
        let mut merged = Vec::with_capacity(self.candles.len().max(other.candles.len()));
        let mut ours = std::mem::take(&mut self.candles).into_iter().peekable();
        let mut theirs = other.candles.into_iter().peekable();
        loop {
            let next = match (ours.peek(), theirs.peek()) {
                (Some(a), Some(b)) => match key(a).cmp(&key(b)) {
                    std::cmp::Ordering::Less => ours.next(),
                    std::cmp::Ordering::Greater => theirs.next(),
                    std::cmp::Ordering::Equal => {
                        let mut a = ours.next().expect("peeked");
                        let b = theirs.next().expect("peeked");
                        a.merge(&b);
                        Some(a)
                    }
                },
                (Some(_), None) => ours.next(),
                (None, Some(_)) => theirs.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        self.candles = merged;
    }

    /// The `1m` candles, in key order.
    pub fn candles(&self) -> &[Candle] {
        &self.candles
    }

    /// The candles of every interval these samples make: the `1m` ones and their roll-up
    /// into each coarser interval, in key order. What the stores answer once the batch is
    /// applied, whenever their roll-up runs.
    pub fn every_interval(&self) -> Vec<Candle> {
        // Every minute counts as late: all of them rolled up.
        self.to_write(i64::MAX)
    }

    /// What a store writes for this batch when the minutes before `through` (Unix ms, a
    /// `1m` boundary) are already rolled up: every `1m` candle, and for a minute before
    /// `through` (a late sample) its roll-up too, since the next roll-up starts at `through`
    /// and would not see it. In key order.
    pub(crate) fn to_write(&self, through: i64) -> Vec<Candle> {
        let late: Vec<&Candle> = self.candles.iter().filter(|c| c.time < through).collect();
        if late.is_empty() {
            return self.candles.clone();
        }
        let mut rows = self.candles.clone();
        rows.extend(roll_up(late, &COARSE));
        rows.sort_by(|a, b| key(a).cmp(&key(b)));
        rows
    }

    pub fn is_empty(&self) -> bool {
        self.candles.is_empty()
    }

    pub fn len(&self) -> usize {
        self.candles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topcoins_schemas::PricedCoin;

    fn coin(id: &str, symbol: &str, price: f64, cap: Option<f64>) -> PricedCoin {
        PricedCoin {
            id: id.into(),
            symbol: symbol.into(),
            name: symbol.into(),
            price_usd: price,
            market_cap_usd: cap,
        }
    }

    #[test]
    fn a_price_snapshot_makes_one_candle_per_symbol_and_interval() {
        let snapshot = PriceSnapshot::new(
            "coinmarketcap",
            vec![
                coin("1", "BTC", 100.0, Some(10.0)),
                coin("2", "eth", 5.0, None),
                // Shares BTC's symbol with a smaller cap: not recorded.
                coin("3", "btc", 1.0, Some(1.0)),
            ],
        )
        .unwrap();
        let batch = Batch::from_prices(&snapshot, 1_764_596_832_345);
        assert_eq!(batch.len(), 2);
        assert!(batch.candles().iter().all(|c| c.interval == Interval::M1));
        let every = batch.every_interval();
        let btc: Vec<_> = every.iter().filter(|c| c.symbol == "BTC").collect();
        assert_eq!(btc.len(), 6);
        assert!(btc.iter().all(|c| c.price.unwrap().close == 100.0));
        assert!(batch.candles().iter().any(|c| c.symbol == "ETH"));
    }

    #[test]
    fn absorbing_batches_equals_one_batch_of_all_their_samples() {
        let sample = |symbol: &str, time, price| Sample {
            symbol: symbol.into(),
            time,
            observation: Observation::Price {
                price_usd: price,
                market_cap_usd: None,
            },
        };
        let rank = |symbol: &str, time, rank| Sample {
            symbol: symbol.into(),
            time,
            observation: Observation::Rank {
                rank,
                volume_24h_usd: Some(1.0),
            },
        };
        let groups = [
            vec![sample("BTC", 60_000, 2.0), sample("ETH", 60_000, 1.0)],
            vec![sample("BTC", 400_000, 5.0), rank("BTC", 410_000, 1)],
            vec![sample("ADA", 59_999, 0.5), sample("BTC", 90_000, 1.5)],
        ];
        let mut absorbed = Batch::default();
        for g in &groups {
            absorbed.absorb(Batch::from_samples(g));
        }
        let all: Vec<Sample> = groups.iter().flatten().cloned().collect();
        assert_eq!(absorbed, Batch::from_samples(&all));
        assert_eq!(absorbed.len(), 4);
    }

    #[test]
    fn snapshot_batches_are_in_key_order_with_unique_keys() {
        let snapshot = PriceSnapshot::new(
            "coinmarketcap",
            (0..50)
                .map(|i| {
                    coin(
                        &i.to_string(),
                        &format!("c{}", 49 - i),
                        i as f64 + 1.0,
                        None,
                    )
                })
                .collect(),
        )
        .unwrap();
        let batch = Batch::from_prices(&snapshot, 1_764_596_832_345);
        assert_eq!(batch.len(), 50);
        assert!(batch.candles().windows(2).all(|w| key(&w[0]) < key(&w[1])));
        // The same as the general path, sample by sample.
        let samples: Vec<Sample> = snapshot
            .coins
            .iter()
            .map(|c| Sample {
                symbol: symbol_key(&c.symbol),
                time: 1_764_596_832_345,
                observation: Observation::Price {
                    price_usd: c.price_usd,
                    market_cap_usd: c.market_cap_usd,
                },
            })
            .collect();
        assert_eq!(batch, Batch::from_samples(&samples));
    }

    #[test]
    fn samples_of_one_row_are_merged_before_the_write() {
        let sample = |time, price| Sample {
            symbol: "btc".into(),
            time,
            observation: Observation::Price {
                price_usd: price,
                market_cap_usd: None,
            },
        };
        // Two minutes: two 1m rows, one row of every coarser interval.
        let batch = Batch::from_samples(&[sample(60_000, 2.0), sample(120_000, 3.0)]);
        assert_eq!(batch.len(), 2);
        let every = batch.every_interval();
        assert_eq!(every.len(), 7);
        let day = every.iter().find(|c| c.interval == Interval::D1).unwrap();
        let ohlc = day.price.unwrap();
        assert_eq!(
            (ohlc.open, ohlc.high, ohlc.low, ohlc.close),
            (2.0, 3.0, 2.0, 3.0)
        );
    }

    #[test]
    fn only_late_minutes_are_rolled_up_on_the_write() {
        let sample = |time, price| Sample {
            symbol: "BTC".into(),
            time,
            observation: Observation::Price {
                price_usd: price,
                market_cap_usd: None,
            },
        };
        let batch = Batch::from_samples(&[sample(60_000, 2.0), sample(600_000, 3.0)]);
        // Nothing rolled up yet, or only before both: the minutes alone.
        assert_eq!(batch.to_write(0), batch.candles());
        assert_eq!(batch.to_write(60_000), batch.candles());
        // The first minute is late: it comes with its five coarser rows, which hold it alone.
        let rows = batch.to_write(120_000);
        assert_eq!(rows.len(), 2 + 5);
        assert!(rows.windows(2).all(|w| key(&w[0]) < key(&w[1])));
        let day = rows.iter().find(|c| c.interval == Interval::D1).unwrap();
        assert_eq!(day.price.unwrap().close, 2.0);
        // Both late: the same rows as every interval at once.
        assert_eq!(batch.to_write(660_000), batch.every_interval());
    }
}
