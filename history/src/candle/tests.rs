use proptest::prelude::*;

use super::*;
use crate::Batch;

fn price(time: i64, price_usd: f64, market_cap_usd: Option<f64>) -> Sample {
    Sample {
        symbol: "BTC".into(),
        time,
        observation: Observation::Price {
            price_usd,
            market_cap_usd,
        },
    }
}

fn fold(samples: &[Sample], interval: Interval) -> Vec<Candle> {
    let mut rows: Vec<Candle> = Vec::new();
    for s in samples {
        let c = Candle::of_sample(s, interval);
        match rows.iter_mut().find(|r| r.time == c.time) {
            Some(row) => row.merge(&c),
            None => rows.push(c),
        }
    }
    rows.sort_by_key(|c| c.time);
    rows
}

/// Samples within two days, a few per minute bucket, some times repeated.
fn samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            0i64..2 * 86_400_000,
            1u32..1000,
            prop::option::of(0u32..1000),
            any::<bool>(),
            1u32..200,
        ),
        1..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(|(t, p, cap, rank_sample, rank)| {
                // Coarse times, so that ties are common.
                let time = t / 30_000 * 30_000;
                if rank_sample {
                    Sample {
                        symbol: "BTC".into(),
                        time,
                        observation: Observation::Rank {
                            rank,
                            volume_24h_usd: cap.map(f64::from),
                        },
                    }
                } else {
                    price(time, f64::from(p) / 8.0, cap.map(f64::from))
                }
            })
            .collect()
    })
}

#[test]
fn first_sample_opens_and_every_sample_moves_high_low_close() {
    let rows = fold(
        &[
            price(1_000, 10.0, None),
            price(2_000, 12.0, None),
            price(3_000, 9.0, None),
            price(4_000, 11.0, Some(7.0)),
        ],
        Interval::M1,
    );
    assert_eq!(rows.len(), 1);
    let ohlc = rows[0].price.unwrap();
    assert_eq!(
        (ohlc.open, ohlc.high, ohlc.low, ohlc.close),
        (10.0, 12.0, 9.0, 11.0)
    );
    assert_eq!(ohlc.market_cap_usd, Some(7.0));
    assert_eq!((ohlc.open_time, ohlc.close_time), (1_000, 4_000));
}

#[test]
fn recorded_wins_its_bucket_over_backfilled() {
    let recorded = Candle::of_sample(&price(3_600_000, 5.0, None), Interval::H1);
    let backfilled = Candle {
        source: Source::CryptoCompare,
        price: Some(Ohlc::of(3_600_000, 1.0, None)),
        volume_to: Some(3.0),
        ..recorded.clone()
    };
    let mut row = backfilled.clone();
    row.merge(&recorded);
    assert_eq!(row, recorded);
    row.merge(&backfilled);
    assert_eq!(row, recorded);
}

#[test]
fn source_codes_round_trip() {
    for s in [Source::Recorded, Source::CryptoCompare] {
        assert_eq!(Source::from_code(s.code()).unwrap(), s);
    }
    assert!(Source::from_code(7).is_err());
}

proptest! {
    #[test]
    fn ohlc_equals_the_hand_computed_one(samples in samples(), i in 0usize..6) {
        let interval = Interval::ALL[i];
        let rows = fold(&samples, interval);
        for row in &rows {
            let inside: Vec<(i64, f64)> = samples
                .iter()
                .filter(|s| interval.bucket_start(s.time) == row.time)
                .filter_map(|s| match s.observation {
                    Observation::Price { price_usd, .. } => Some((s.time, price_usd)),
                    Observation::Rank { .. } => None,
                })
                .collect();
            let Some(ohlc) = row.price else {
                prop_assert!(inside.is_empty());
                continue;
            };
            let first = inside.iter().map(|s| s.0).min().unwrap();
            let last = inside.iter().map(|s| s.0).max().unwrap();
            // Ties in time go to the smaller price for the open, the larger for the close.
            let open = inside.iter().filter(|s| s.0 == first).map(|s| s.1).fold(f64::MAX, f64::min);
            let close = inside.iter().filter(|s| s.0 == last).map(|s| s.1).fold(f64::MIN, f64::max);
            prop_assert_eq!(ohlc.open, open);
            prop_assert_eq!(ohlc.close, close);
            prop_assert_eq!(ohlc.high, inside.iter().map(|s| s.1).fold(f64::MIN, f64::max));
            prop_assert_eq!(ohlc.low, inside.iter().map(|s| s.1).fold(f64::MAX, f64::min));
            prop_assert!(ohlc.low <= ohlc.open && ohlc.open <= ohlc.high);
            prop_assert!(ohlc.low <= ohlc.close && ohlc.close <= ohlc.high);
        }
        // One row per bucket.
        let mut times: Vec<i64> = rows.iter().map(|r| r.time).collect();
        times.dedup();
        prop_assert_eq!(times.len(), rows.len());
    }

    #[test]
    fn replays_in_any_order_change_nothing(
        samples in samples(),
        order in prop::collection::vec(any::<u32>(), 60),
        repeat in prop::collection::vec(0usize..60, 0..20),
    ) {
        // A crash between commit and ack replays a suffix of the stream, interleaved with
        // what came later: any order, any repetition of the same set.
        let mut replayed: Vec<Sample> = samples.clone();
        replayed.extend(repeat.iter().map(|&i| samples[i % samples.len()].clone()));
        let mut keyed: Vec<(u32, Sample)> = replayed
            .into_iter()
            .enumerate()
            .map(|(i, s)| (order[i % order.len()], s))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let replayed: Vec<Sample> = keyed.into_iter().map(|(_, s)| s).collect();
        for interval in Interval::ALL {
            prop_assert_eq!(fold(&samples, interval), fold(&replayed, interval));
        }
        // The batch fold (all intervals at once) agrees with the row-by-row one.
        let mut batch: Vec<Candle> = Batch::from_samples(&replayed).every_interval();
        batch.sort_by_key(|c| (c.interval, c.time));
        let mut expected: Vec<Candle> = Interval::ALL.into_iter().flat_map(|i| fold(&samples, i)).collect();
        expected.sort_by_key(|c| (c.interval, c.time));
        prop_assert_eq!(batch, expected);
    }

    #[test]
    fn merge_is_a_join(a in samples(), b in samples()) {
        // Merging the candles of two batches equals the candles of their union.
        let all: Vec<Sample> = a.iter().chain(&b).cloned().collect();
        for interval in Interval::ALL {
            let mut merged = fold(&a, interval);
            for c in fold(&b, interval) {
                match merged.iter_mut().find(|r| r.time == c.time) {
                    Some(row) => row.merge(&c),
                    None => merged.push(c),
                }
            }
            merged.sort_by_key(|c| c.time);
            prop_assert_eq!(merged, fold(&all, interval));
        }
    }
}
