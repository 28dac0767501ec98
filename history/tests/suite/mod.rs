//! The behavioural suite every backend passes: one generic async fn per behaviour, and
//! [`behaviours!`], which makes a `#[tokio::test]` of each for a backend's `open` function
//! (`async fn open() -> (Guard, impl CandleStore)`; the guard keeps what the store needs alive).

use std::time::Duration;

use topcoins_history::{AccountStore, ApiKey, Record, RecordRange, RecordStore, User, Watch};
use topcoins_history::{
    Alert, AlertState, AlertStore, Attempt, Channel, Decision, Message, Next, Rotation, Rule,
};
use topcoins_history::{
    BackfillProgress, Batch, Candle, CandleStore, Cursor, Interval, Observation, Ohlc, PRUNE_STEP,
    Range, Sample, Source,
};
use topcoins_schemas::{PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot};

/// Every behaviour of a test, whatever the backend, is done within this.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// 2025-12-01T00:00:00Z.
pub const DAY0: i64 = 1_764_547_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

macro_rules! behaviours {
    ($open:path) => {
        $crate::suite::behaviours!(@each $open;
            candles_equal_the_hand_computed_ohlc,
            one_row_per_bucket,
            replaying_snapshots_changes_nothing,
            pagination_returns_every_row_once,
            recorded_wins_over_backfilled,
            retention_deletes_only_what_it_should,
            latest_is_each_coins_newest_priced_candle,
            migrate_is_idempotent,
            sql_merge_equals_the_reference,
            backfill_progress_is_kept_per_coin_and_interval,
            closes_at_is_each_coins_last_price_by_then,
            rollups_change_no_answer,
            records_are_kept_once_and_paged,
            records_prune_only_the_old,
            keys_users_and_watchlists,
            alerts_rules_outbox_and_attempts,
        );
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((_guard, store)) = $open().await else {
                    return;
                };
                tokio::time::timeout($crate::suite::TIMEOUT, $crate::suite::$name(&store))
                    .await
                    .expect("behaviour timed out");
            }
        )*
    };
}
pub(crate) use behaviours;

pub fn prices(as_of: i64, coins: &[(&str, f64, Option<f64>)]) -> (PriceSnapshot, i64) {
    let coins = coins
        .iter()
        .enumerate()
        .map(|(i, (symbol, price, cap))| PricedCoin {
            id: format!("{i}").into(),
            symbol: (*symbol).into(),
            name: (*symbol).into(),
            price_usd: *price,
            market_cap_usd: *cap,
        })
        .collect();
    (PriceSnapshot::new("test", coins).unwrap(), as_of)
}

fn ranking(symbols: &[(&str, f64)]) -> RankingSnapshot {
    let coins = symbols
        .iter()
        .map(|(symbol, volume)| RankedCoin {
            id: (*symbol).into(),
            symbol: (*symbol).into(),
            name: (*symbol).into(),
            volume_24h_usd: Some(*volume),
            price_usd: None,
        })
        .collect();
    RankingSnapshot::new("test", coins).unwrap()
}

fn price_sample(symbol: &str, time: i64, price_usd: f64) -> Sample {
    Sample {
        symbol: symbol.into(),
        time,
        observation: Observation::Price {
            price_usd,
            market_cap_usd: None,
        },
    }
}

/// Every priced row of `symbol` and `interval`, page by page.
pub async fn all(store: &impl CandleStore, symbol: &str, interval: Interval) -> Vec<Candle> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .range(&Range {
                symbol: symbol.into(),
                interval,
                from: i64::MIN,
                to: i64::MAX,
                limit: 1000,
                cursor,
            })
            .await
            .unwrap();
        out.extend(page.candles);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

pub async fn dump(store: &impl CandleStore, symbols: &[&str]) -> Vec<Candle> {
    let mut out = Vec::new();
    for symbol in symbols {
        for interval in Interval::ALL {
            out.extend(all(store, symbol, interval).await);
        }
    }
    out
}

fn ohlc(c: &Candle) -> (f64, f64, f64, f64) {
    let p = c.price.unwrap();
    (p.open, p.high, p.low, p.close)
}

/// The candles of some samples as the reference merge computes them, priced rows only.
fn reference(samples: &[Sample], symbol: &str, interval: Interval) -> Vec<Candle> {
    let mut rows: Vec<Candle> = Batch::from_samples(samples)
        .every_interval()
        .iter()
        .filter(|c| c.symbol == symbol && c.interval == interval && c.price.is_some())
        .cloned()
        .collect();
    rows.sort_by_key(|c| c.time);
    rows
}

pub async fn candles_equal_the_hand_computed_ohlc(store: &impl CandleStore) {
    let t = DAY0 + 10 * HOUR;
    let snapshots = [
        prices(t, &[("BTC", 100.0, Some(1e6)), ("eth", 10.0, None)]),
        prices(
            t + 20_000,
            &[("BTC", 110.0, Some(1.1e6)), ("eth", 9.0, None)],
        ),
        // SOL new in a minute the others are in already: written beside their rows.
        prices(
            t + 40_000,
            &[
                ("BTC", 90.0, Some(0.9e6)),
                ("eth", 11.0, None),
                ("SOL", 3.0, None),
            ],
        ),
        prices(t + 70_000, &[("BTC", 95.0, Some(0.95e6))]),
        prices(
            t + 6 * MIN,
            &[("BTC", 120.0, Some(1.2e6)), ("eth", 12.0, None)],
        ),
    ];
    for (snapshot, as_of) in &snapshots {
        store
            .apply(Batch::from_prices(snapshot, *as_of))
            .await
            .unwrap();
    }
    store
        .apply(Batch::from_ranking(
            &ranking(&[("BTC", 5e9), ("ETH", 2e9)]),
            t + 30_000,
        ))
        .await
        .unwrap();

    let m1 = all(store, "btc", Interval::M1).await;
    let times: Vec<i64> = m1.iter().map(|c| c.time).collect();
    assert_eq!(times, [t, t + MIN, t + 6 * MIN]);
    assert_eq!(ohlc(&m1[0]), (100.0, 110.0, 90.0, 90.0));
    assert_eq!(ohlc(&m1[1]), (95.0, 95.0, 95.0, 95.0));
    assert_eq!(ohlc(&m1[2]), (120.0, 120.0, 120.0, 120.0));
    assert_eq!(m1[0].price.unwrap().market_cap_usd, Some(0.9e6));
    let ranked = m1[0].ranked.unwrap();
    assert_eq!((ranked.rank, ranked.volume_24h_usd), (1, Some(5e9)));
    assert!(m1[1].ranked.is_none());

    let m5 = all(store, "BTC", Interval::M5).await;
    assert_eq!(m5.len(), 2);
    assert_eq!(ohlc(&m5[0]), (100.0, 110.0, 90.0, 95.0));
    for interval in [Interval::M15, Interval::H1, Interval::H4, Interval::D1] {
        let rows = all(store, "BTC", interval).await;
        assert_eq!(rows.len(), 1, "{interval}");
        assert_eq!(ohlc(&rows[0]), (100.0, 120.0, 90.0, 120.0), "{interval}");
        assert_eq!(rows[0].price.unwrap().market_cap_usd, Some(1.2e6));
        assert_eq!(rows[0].source, Source::Recorded);
    }
    let eth = all(store, "ETH", Interval::H1).await;
    assert_eq!(ohlc(&eth[0]), (10.0, 12.0, 9.0, 12.0));
    assert_eq!(eth[0].ranked.unwrap().rank, 2);
    let sol = all(store, "SOL", Interval::M1).await;
    assert_eq!(sol.len(), 1);
    assert_eq!((sol[0].time, ohlc(&sol[0])), (t, (3.0, 3.0, 3.0, 3.0)));
}

pub async fn one_row_per_bucket(store: &impl CandleStore) {
    // A snapshot every 7 s for 40 minutes, prices wandering.
    let mut samples = Vec::new();
    for i in 0..(40 * 60 / 7) {
        let time = DAY0 + 3 * HOUR + i * 7_000 + 123;
        let price = 50.0 + ((i * 37) % 23) as f64;
        samples.push(price_sample("SOL", time, price));
        let (snapshot, as_of) = prices(time, &[("SOL", price, None)]);
        store
            .apply(Batch::from_prices(&snapshot, as_of))
            .await
            .unwrap();
    }
    for interval in Interval::ALL {
        let rows = all(store, "SOL", interval).await;
        assert!(rows.windows(2).all(|w| w[0].time < w[1].time), "{interval}");
        assert!(rows.iter().all(|c| interval.bucket_start(c.time) == c.time));
        assert_eq!(rows, reference(&samples, "SOL", interval), "{interval}");
        for c in &rows {
            let (o, h, l, cl) = ohlc(c);
            assert!(l <= o && o <= h && l <= cl && cl <= h);
        }
    }
    assert_eq!(all(store, "SOL", Interval::M1).await.len(), 40);
}

pub async fn replaying_snapshots_changes_nothing(store: &impl CandleStore) {
    let mut batches = Vec::new();
    for i in 0..30i64 {
        let t = DAY0 + i * 47_000;
        let (p, as_of) = prices(
            t,
            &[
                ("BTC", 100.0 + (i % 7) as f64, Some(1e6 + i as f64)),
                ("XRP", 0.5 + (i % 3) as f64, None),
            ],
        );
        batches.push(Batch::from_prices(&p, as_of));
        if i % 4 == 0 {
            batches.push(Batch::from_ranking(
                &ranking(&[("XRP", i as f64), ("BTC", 1.0)]),
                t + 1,
            ));
        }
    }
    for b in &batches {
        store.apply(b.clone()).await.unwrap();
    }
    let before = dump(store, &["BTC", "XRP"]).await;
    assert!(!before.is_empty());
    // The same snapshot again; then everything again, the newest first (a redelivery after a
    // crash between commit and ack, interleaved with what came later).
    store.apply(batches[5].clone()).await.unwrap();
    assert_eq!(dump(store, &["BTC", "XRP"]).await, before);
    for b in batches.iter().rev() {
        store.apply(b.clone()).await.unwrap();
    }
    assert_eq!(dump(store, &["BTC", "XRP"]).await, before);
}

pub async fn pagination_returns_every_row_once(store: &impl CandleStore) {
    let samples: Vec<Sample> = (0..250)
        .map(|i| price_sample("ADA", DAY0 + i * MIN + 5, 1.0 + i as f64))
        .collect();
    store.apply(Batch::from_samples(&samples)).await.unwrap();
    let (from, to) = (DAY0 + 10 * MIN, DAY0 + 200 * MIN);
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = store
            .range(&Range {
                symbol: "ada".into(),
                interval: Interval::M1,
                from,
                to,
                limit: 7,
                cursor,
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.candles.len() <= 7);
        seen.extend(page.candles.iter().map(|c| c.time));
        // A cursor survives its text form, as the API hands it out.
        match page.next_cursor {
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<i64> = (10..200).map(|i| DAY0 + i * MIN).collect();
    assert_eq!(
        seen, expected,
        "from included, to excluded, each row once, ascending"
    );
    assert_eq!(pages, 190 / 7 + 1);
    let empty = Range {
        symbol: "ADA".into(),
        interval: Interval::M1,
        from,
        to: from,
        limit: 10,
        cursor: None,
    };
    assert!(store.range(&empty).await.unwrap().candles.is_empty());
    let backwards = Range {
        to: from - 1,
        ..empty
    };
    assert!(store.range(&backwards).await.is_err());
}

fn backfilled(symbol: &str, interval: Interval, time: i64, close: f64) -> Candle {
    Candle {
        symbol: symbol.into(),
        interval,
        time,
        source: Source::CryptoCompare,
        price: Some(Ohlc {
            open_time: time,
            open: close - 1.0,
            high: close + 2.0,
            low: close - 2.0,
            close_time: time,
            close,
            market_cap_usd: None,
        }),
        ranked: None,
        volume_from: Some(close * 10.0),
        volume_to: Some(close * 1000.0),
    }
}

pub async fn recorded_wins_over_backfilled(store: &impl CandleStore) {
    let hours: Vec<Candle> = (0..3)
        .map(|h| backfilled("BTC", Interval::H1, DAY0 + h * HOUR, 100.0 + h as f64))
        .collect();
    store.upsert_backfilled(hours.clone()).await.unwrap();
    assert_eq!(
        all(store, "BTC", Interval::H1).await,
        hours,
        "kept as given"
    );

    // Recorded samples in the second hour take its bucket.
    let recorded = [
        price_sample("BTC", DAY0 + HOUR + 5 * MIN, 7.0),
        price_sample("BTC", DAY0 + HOUR + 9 * MIN, 8.0),
    ];
    store
        .apply(Batch::from_samples(&recorded[..1]))
        .await
        .unwrap();
    store
        .apply(Batch::from_samples(&recorded[1..]))
        .await
        .unwrap();
    // The provider's newer word on all three hours changes only the backfilled ones.
    let newer: Vec<Candle> = (0..3)
        .map(|h| backfilled("BTC", Interval::H1, DAY0 + h * HOUR, 200.0 + h as f64))
        .collect();
    store.upsert_backfilled(newer.clone()).await.unwrap();

    let rows = all(store, "BTC", Interval::H1).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], newer[0]);
    assert_eq!(rows[2], newer[2]);
    assert_eq!(rows[1].source, Source::Recorded);
    assert_eq!(ohlc(&rows[1]), (7.0, 8.0, 7.0, 8.0));
    assert_eq!((rows[1].volume_from, rows[1].volume_to), (None, None));
    assert_eq!(rows[1], reference(&recorded, "BTC", Interval::H1)[0]);

    // A candle that is not a provider's is refused.
    let mut bad = backfilled("BTC", Interval::D1, DAY0, 1.0);
    bad.source = Source::Recorded;
    assert!(store.upsert_backfilled(vec![bad]).await.is_err());

    // The same rule for minutes, before the roll-up has reached them (stored apart) and
    // after it has: backfilled minutes are served as given, a recorded one takes its bucket
    // whichever came first, and a backfilled minute is never rolled up.
    let day = DAY0 + 30 * HOUR;
    let minutes: Vec<Candle> = (0..3)
        .map(|m| backfilled("ETH", Interval::M1, day + m * MIN, 50.0 + m as f64))
        .collect();
    store
        .upsert_backfilled(minutes[..2].to_vec())
        .await
        .unwrap();
    let eth = [price_sample("ETH", day + MIN + 1_000, 9.0)];
    store.apply(Batch::from_samples(&eth)).await.unwrap();
    store.upsert_backfilled(minutes.clone()).await.unwrap();
    let want = vec![
        minutes[0].clone(),
        reference(&eth, "ETH", Interval::M1)[0].clone(),
        minutes[2].clone(),
    ];
    assert_eq!(
        all(store, "ETH", Interval::M1).await,
        want,
        "before the roll-up"
    );
    assert_eq!(
        all(store, "ETH", Interval::M5).await,
        reference(&eth, "ETH", Interval::M5)
    );
    store.rollup(day + HOUR).await.unwrap();
    assert_eq!(
        all(store, "ETH", Interval::M1).await,
        want,
        "after the roll-up"
    );
    assert_eq!(
        all(store, "ETH", Interval::M5).await,
        reference(&eth, "ETH", Interval::M5)
    );
    let latest = store.latest(Interval::M1).await.unwrap();
    assert_eq!(
        latest.iter().find(|c| c.symbol == "ETH"),
        Some(&minutes[2]),
        "latest minute"
    );
}

pub async fn retention_deletes_only_what_it_should(store: &impl CandleStore) {
    // Two days of minutes for three coins: more than one prune step's worth per coin.
    let mut samples = Vec::new();
    for symbol in ["AAA", "BBB", "CCC"] {
        for i in 0..2 * 24 * 60 {
            samples.push(price_sample(symbol, DAY0 + i * MIN, 1.0 + (i % 10) as f64));
        }
    }
    store.apply(Batch::from_samples(&samples)).await.unwrap();
    let cutoff = DAY0 + 36 * HOUR + 30_000; // not aligned: a bucket starting before it goes
    // Minutes not rolled up are kept: before the roll-up, and after one that stopped short of
    // the cutoff, only the rolled-up ones go.
    assert_eq!(store.prune(Interval::M1, cutoff).await.unwrap(), 0);
    let rolled = store.rollup(DAY0 + 10 * HOUR + 59_999).await.unwrap();
    assert_eq!(rolled.through, DAY0 + 10 * HOUR);
    assert_eq!(rolled.minutes, 3 * 10 * 60);
    assert_eq!(
        store.prune(Interval::M1, cutoff).await.unwrap(),
        3 * 10 * 60
    );
    store.rollup(DAY0 + 2 * 24 * HOUR).await.unwrap();
    let deleted = 3 * 10 * 60 + store.prune(Interval::M1, cutoff).await.unwrap();
    let per_coin = 36 * 60 + 1;
    assert!(per_coin > PRUNE_STEP as i64);
    assert_eq!(deleted, 3 * per_coin as u64);
    for symbol in ["AAA", "BBB", "CCC"] {
        let m1 = all(store, symbol, Interval::M1).await;
        assert_eq!(m1.len() as i64, 2 * 24 * 60 - per_coin);
        assert!(m1.iter().all(|c| c.time >= cutoff));
        assert_eq!(
            m1,
            reference(&samples, symbol, Interval::M1)[per_coin as usize..]
        );
        // Other intervals are untouched.
        assert_eq!(all(store, symbol, Interval::M5).await.len(), 2 * 24 * 12);
        assert_eq!(all(store, symbol, Interval::D1).await.len(), 2);
    }
    assert_eq!(store.prune(Interval::M1, cutoff).await.unwrap(), 0);
    assert_eq!(store.prune(Interval::D1, DAY0).await.unwrap(), 0);
}

pub async fn latest_is_each_coins_newest_priced_candle(store: &impl CandleStore) {
    assert!(store.latest(Interval::H1).await.unwrap().is_empty());
    for (i, (snapshot, as_of)) in [
        prices(DAY0, &[("BTC", 1.0, None), ("ETH", 2.0, None)]),
        prices(DAY0 + 2 * HOUR, &[("BTC", 3.0, None)]),
    ]
    .iter()
    .enumerate()
    {
        store
            .apply(Batch::from_prices(snapshot, *as_of))
            .await
            .unwrap();
        assert_eq!(
            store.latest(Interval::H1).await.unwrap().len(),
            2,
            "after {i}"
        );
    }
    // A ranking sample later still makes no priced candle: not the latest.
    store
        .apply(Batch::from_ranking(
            &ranking(&[("ETH", 1.0), ("DOGE", 1.0)]),
            DAY0 + 5 * HOUR,
        ))
        .await
        .unwrap();
    let latest = store.latest(Interval::H1).await.unwrap();
    let got: Vec<(&str, i64, f64)> = latest
        .iter()
        .map(|c| (c.symbol.as_str(), c.time, c.price.unwrap().close))
        .collect();
    assert_eq!(got, [("BTC", DAY0 + 2 * HOUR, 3.0), ("ETH", DAY0, 2.0)]);
    assert!(all(store, "DOGE", Interval::H1).await.is_empty());
}

pub async fn migrate_is_idempotent(store: &impl CandleStore) {
    let (p, as_of) = prices(DAY0, &[("BTC", 1.0, None)]);
    store.apply(Batch::from_prices(&p, as_of)).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(all(store, "BTC", Interval::D1).await.len(), 1);
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The database's merge (SQL) against [`Candle::merge`] (Rust) on many samples with tied
/// times, tied prices and missing caps, written in batches in a shuffled order, some twice.
pub async fn sql_merge_equals_the_reference(store: &impl CandleStore) {
    let symbols = ["AAA", "BBB", "CCC"];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let samples: Vec<Sample> = (0..600)
        .map(|_| {
            let symbol = symbols[rng.below(3) as usize];
            let time = DAY0 + rng.below(3 * 360) as i64 * 10_000; // 3 hours in 10 s steps
            let observation = if rng.below(4) == 0 {
                Observation::Rank {
                    rank: 1 + rng.below(5) as u32,
                    volume_24h_usd: (rng.below(3) > 0).then(|| rng.below(4) as f64 * 1e6),
                }
            } else {
                Observation::Price {
                    price_usd: 1.0 + rng.below(12) as f64 / 4.0,
                    market_cap_usd: (rng.below(3) > 0).then(|| rng.below(4) as f64 * 1e9),
                }
            };
            Sample {
                symbol: symbol.into(),
                time,
                observation,
            }
        })
        .collect();
    // Small batches and large ones (a backend may write many rows per statement).
    let (small, large) = samples.split_at(300);
    let mut batches: Vec<&[Sample]> = small.chunks(7).chain(large.chunks(75)).collect();
    for i in (1..batches.len()).rev() {
        batches.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let replays: Vec<&[Sample]> = (0..20)
        .map(|_| batches[rng.below(batches.len() as u64) as usize])
        .collect();
    for batch in batches.iter().chain(&replays) {
        store.apply(Batch::from_samples(*batch)).await.unwrap();
    }
    for symbol in symbols {
        for interval in Interval::ALL {
            let stored = all(store, symbol, interval).await;
            assert!(!stored.is_empty());
            assert_eq!(
                stored,
                reference(&samples, symbol, interval),
                "{symbol} {interval}"
            );
        }
    }
}

/// What the backfill fetched is read back as written, one record per coin and interval, the
/// symbol keyed in upper case; a record written again replaces the one before.
pub async fn backfill_progress_is_kept_per_coin_and_interval(store: &impl CandleStore) {
    assert!(store.backfill_progress().await.unwrap().is_empty());
    let progress = |symbol: &str, interval, oldest, complete| BackfillProgress {
        symbol: symbol.into(),
        interval,
        oldest,
        newest: DAY0,
        complete,
        fetched_at: DAY0 + 5 * MIN,
    };
    let btc_day = progress("BTC", Interval::D1, DAY0 - 2000 * 24 * HOUR, true);
    let btc_hour = progress("BTC", Interval::H1, DAY0 - 2000 * HOUR, false);
    for p in [&btc_hour, &btc_day] {
        store.record_backfill_progress(p.clone()).await.unwrap();
    }
    store
        .record_backfill_progress(progress("eth", Interval::D1, DAY0 - 24 * HOUR, false))
        .await
        .unwrap();
    let eth_day = progress("ETH", Interval::D1, DAY0 - 24 * HOUR, false);
    assert_eq!(
        store.backfill_progress().await.unwrap(),
        [btc_day.clone(), btc_hour.clone(), eth_day.clone()]
    );

    // Widened at both ends later: the new record replaces the old one.
    let wider = BackfillProgress {
        oldest: btc_hour.oldest - 100 * HOUR,
        newest: DAY0 + 3 * HOUR,
        complete: true,
        fetched_at: DAY0 + 3 * HOUR + MIN,
        ..btc_hour
    };
    store.record_backfill_progress(wider.clone()).await.unwrap();
    assert_eq!(
        store.backfill_progress().await.unwrap(),
        [btc_day, wider, eth_day]
    );
    // Candles are another table: none came with the records.
    assert!(all(store, "BTC", Interval::D1).await.is_empty());
}

/// `closes_at`: per coin, the last price at or before a time, from the finest interval that
/// has it, never a sample after it, and the coarser intervals once the fine ones are pruned.
pub async fn closes_at_is_each_coins_last_price_by_then(store: &impl CandleStore) {
    assert!(store.closes_at(DAY0).await.unwrap().is_empty());
    let samples = [
        price_sample("BTC", DAY0 + 10 * MIN, 1.0),
        price_sample("BTC", DAY0 + 20 * MIN, 2.0),
        price_sample("BTC", DAY0 + 70 * MIN, 3.0),
        price_sample("DOGE", DAY0 + 2 * HOUR, 9.0),
    ];
    store.apply(Batch::from_samples(&samples)).await.unwrap();
    store
        .upsert_backfilled(vec![
            backfilled("ETH", Interval::H1, DAY0, 50.0),
            backfilled("ETH", Interval::H1, DAY0 + HOUR, 51.0),
        ])
        .await
        .unwrap();
    // A coin with only a rank has no price to give.
    store
        .apply(Batch::from_ranking(&ranking(&[("XRP", 1.0)]), DAY0))
        .await
        .unwrap();
    let closes = |at: i64| async move {
        store
            .closes_at(at)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.symbol.to_string(), c.interval, c.price.unwrap().close))
            .collect::<Vec<_>>()
    };
    let eth = ("ETH".to_owned(), Interval::H1, 50.0);
    assert_eq!(closes(DAY0 - 1).await, []);
    // The backfilled hour says it closed at its start.
    assert_eq!(
        closes(DAY0 + 10 * MIN - 1).await,
        std::slice::from_ref(&eth)
    );
    // BTC's hour holding 15 min closed (at 20 min) after it: the minutes answer.
    assert_eq!(
        closes(DAY0 + 15 * MIN).await,
        [("BTC".to_owned(), Interval::M1, 1.0), eth.clone()]
    );
    assert_eq!(
        closes(DAY0 + 20 * MIN).await,
        [("BTC".to_owned(), Interval::M1, 2.0), eth.clone()]
    );
    assert_eq!(
        closes(DAY0 + 90 * MIN).await,
        [
            ("BTC".to_owned(), Interval::M1, 3.0),
            ("ETH".to_owned(), Interval::H1, 51.0),
        ]
    );
    // The minutes (and 5, 15 minutes) rolled up and pruned: the hours answer, still without
    // a later sample.
    store.rollup(DAY0 + 3 * HOUR).await.unwrap();
    for interval in [Interval::M1, Interval::M5, Interval::M15] {
        store.prune(interval, DAY0 + 3 * HOUR).await.unwrap();
    }
    assert_eq!(closes(DAY0 + 15 * MIN).await, std::slice::from_ref(&eth));
    assert_eq!(
        closes(DAY0 + 30 * MIN).await,
        [("BTC".to_owned(), Interval::H1, 2.0), eth]
    );
    assert_eq!(
        closes(DAY0 + 3 * HOUR).await,
        [
            ("BTC".to_owned(), Interval::H1, 3.0),
            ("DOGE".to_owned(), Interval::H1, 9.0),
            ("ETH".to_owned(), Interval::H1, 51.0),
        ]
    );
}

/// What the store should answer for `symbol` and `interval` after these recorded samples and
/// backfilled candles: the recorded fold, and the backfilled rows of buckets nothing was
/// recorded in.
fn expected(
    samples: &[Sample],
    backfill: &[Candle],
    symbol: &str,
    interval: Interval,
) -> Vec<Candle> {
    // A recorded rank alone takes its bucket too, leaving it without a price.
    let recorded: Vec<i64> = Batch::from_samples(samples)
        .every_interval()
        .iter()
        .filter(|c| c.symbol == symbol && c.interval == interval)
        .map(|c| c.time)
        .collect();
    let mut rows = reference(samples, symbol, interval);
    for b in backfill {
        if b.symbol == symbol && b.interval == interval && !recorded.contains(&b.time) {
            rows.push(b.clone());
        }
    }
    rows.sort_by_key(|c| c.time);
    rows
}

/// `closes_at` by its definition, from the expected rows of every interval.
fn expected_closes(
    rows: &[(String, Interval, Vec<Candle>)],
    at: i64,
) -> Vec<(String, Interval, f64)> {
    let mut best: std::collections::BTreeMap<String, (i64, std::cmp::Reverse<Interval>, f64)> =
        std::collections::BTreeMap::new();
    for (symbol, interval, candles) in rows {
        let Some(c) = candles
            .iter()
            .rev()
            .find(|c| c.time <= at && c.price.unwrap().close_time <= at)
        else {
            continue;
        };
        let p = c.price.unwrap();
        let key = (p.close_time, std::cmp::Reverse(*interval), p.close);
        if best
            .get(symbol)
            .is_none_or(|held| (held.0, held.1) < (key.0, key.1))
        {
            best.insert(symbol.clone(), key);
        }
    }
    best.into_iter()
        .map(|(s, (_, std::cmp::Reverse(i), close))| (s, i, close))
        .collect()
}

/// The roll-up (`1m` written per snapshot, the coarser intervals rolled up from it, reads
/// merging in what is not rolled up yet) is invisible: with roll-ups at random points, some
/// going backwards, samples arriving late (before the mark), rankings and backfilled rows
/// mixed in, every range (paged, unaligned bounds), `latest` and `closes_at` equal what the
/// samples make; and once everything is rolled up the minutes can all go and the coarser
/// intervals still answer the same.
pub async fn rollups_change_no_answer(store: &impl CandleStore) {
    let symbols = ["AAA", "BBB", "CCC", "DDD"];
    // EEE: backfilled only, then ranks alone in two of its hours (never a price).
    let checked = ["AAA", "BBB", "CCC", "DDD", "EEE"];
    let mut rng = Rng(0x0011_2233_4455_6677);
    let start = DAY0 + 21 * HOUR; // across a UTC midnight: two daily buckets
    let backfill: Vec<Candle> = (0..8)
        .flat_map(|h| {
            [
                backfilled("DDD", Interval::H1, start + h * HOUR, 40.0 + h as f64),
                backfilled("CCC", Interval::H1, start - HOUR + h * HOUR, 30.0),
            ]
        })
        .chain((0..8).map(|h| backfilled("EEE", Interval::H1, start + h * HOUR, 60.0 + h as f64)))
        .chain([
            backfilled("DDD", Interval::D1, DAY0, 44.0),
            backfilled("DDD", Interval::D1, DAY0 + 24 * HOUR, 45.0),
        ])
        .collect();
    store.upsert_backfilled(backfill.clone()).await.unwrap();
    let mut applied: Vec<Sample> = Vec::new();
    let mut newest = start;
    let check = |applied: Vec<Sample>| {
        let backfill = backfill.clone();
        async move {
            let mut every = Vec::new();
            for symbol in checked {
                for interval in Interval::ALL {
                    let want = expected(&applied, &backfill, symbol, interval);
                    assert_eq!(
                        all(store, symbol, interval).await,
                        want,
                        "{symbol} {interval}"
                    );
                    every.push((symbol.to_owned(), interval, want));
                }
            }
            // Pages of one over all of EEE's hours (some replaced by ranks).
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let page = store
                    .range(&Range {
                        symbol: "EEE".into(),
                        interval: Interval::H1,
                        from: i64::MIN,
                        to: i64::MAX,
                        limit: 1,
                        cursor,
                    })
                    .await
                    .unwrap();
                got.extend(page.candles);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let want = expected(&applied, &backfill, "EEE", Interval::H1);
            assert_eq!(got, want, "EEE by ones");
            // Pages of 3 between unaligned bounds.
            for interval in [Interval::M1, Interval::M5, Interval::H1, Interval::D1] {
                let (from, to) = (start + 7 * MIN + 1, start + 4 * HOUR + 13 * MIN);
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store
                        .range(&Range {
                            symbol: "aaa".into(),
                            interval,
                            from,
                            to,
                            limit: 3,
                            cursor,
                        })
                        .await
                        .unwrap();
                    assert!(page.candles.len() <= 3);
                    got.extend(page.candles);
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                let want: Vec<Candle> = expected(&applied, &backfill, "AAA", interval)
                    .into_iter()
                    .filter(|c| c.time >= from && c.time < to)
                    .collect();
                assert_eq!(got, want, "pages of {interval}");
            }
            for interval in Interval::ALL {
                let want: Vec<Candle> = every
                    .iter()
                    .filter(|(_, i, _)| *i == interval)
                    .filter_map(|(_, _, rows)| rows.last().cloned())
                    .collect();
                assert_eq!(
                    store.latest(interval).await.unwrap(),
                    want,
                    "latest {interval}"
                );
            }
            for at in [
                start + 30 * MIN + 1,
                start + 3 * HOUR,
                start + 5 * HOUR + 7_000,
            ] {
                let got: Vec<(String, Interval, f64)> = store
                    .closes_at(at)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.symbol.to_string(), c.interval, c.price.unwrap().close))
                    .collect();
                assert_eq!(got, expected_closes(&every, at), "closes at {at}");
            }
        }
    };
    for step in 0..60 {
        // A batch of samples a few seconds to minutes on; one in five holds late ones.
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let late = rng.below(5) == 0;
            let time = if late {
                newest - rng.below(40 * MIN as u64) as i64
            } else {
                newest + rng.below(3 * MIN as u64) as i64
            };
            newest = newest.max(time);
            let symbol = symbols[rng.below(4) as usize];
            let observation = if rng.below(4) == 0 {
                Observation::Rank {
                    rank: 1 + rng.below(4) as u32,
                    volume_24h_usd: Some(rng.below(9) as f64),
                }
            } else {
                Observation::Price {
                    price_usd: 1.0 + rng.below(20) as f64,
                    market_cap_usd: (rng.below(2) == 0).then(|| rng.below(9) as f64 * 1e6),
                }
            };
            batch.push(Sample {
                symbol: symbol.into(),
                time,
                observation,
            });
        }
        if step == 20 || step == 40 {
            // A rank alone in one of EEE's backfilled hours, at the newest time.
            batch.push(Sample {
                symbol: "EEE".into(),
                time: newest,
                observation: Observation::Rank {
                    rank: 9,
                    volume_24h_usd: None,
                },
            });
        }
        store.apply(Batch::from_samples(&batch)).await.unwrap();
        applied.extend(batch);
        if rng.below(3) == 0 {
            // Up to a random recent time, sometimes before the mark (nothing to do).
            let until = newest - rng.below(30 * MIN as u64) as i64;
            let rolled = store.rollup(until).await.unwrap();
            assert!(rolled.through >= Interval::M1.bucket_start(until));
        }
        if step % 15 == 14 {
            check(applied.clone()).await;
        }
    }
    assert!(newest > start + 4 * HOUR, "the samples span several hours");
    // Everything rolled up: the minutes may all go, the coarser intervals keep the samples.
    let rolled = store.rollup(newest + MIN).await.unwrap();
    assert!(rolled.rows > 0);
    for symbol in checked {
        for interval in COARSE_OF_TEST {
            assert_eq!(
                all(store, symbol, interval).await,
                expected(&applied, &backfill, symbol, interval),
                "{symbol} {interval} after the roll-up"
            );
        }
    }
    assert!(store.prune(Interval::M1, i64::MAX).await.unwrap() > 0);
    for symbol in checked {
        assert!(all(store, symbol, Interval::M1).await.is_empty());
        for interval in COARSE_OF_TEST {
            assert_eq!(
                all(store, symbol, interval).await,
                expected(&applied, &backfill, symbol, interval),
                "{symbol} {interval} from the stored rows alone"
            );
        }
    }
}

const COARSE_OF_TEST: [Interval; 5] = [
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];

fn record(metric: &str, time: i64, value: f64) -> Record {
    Record {
        metric: metric.into(),
        time,
        value,
    }
}

fn record_range(metric: &str, from: i64, to: i64, limit: usize) -> RecordRange {
    RecordRange {
        metric: metric.to_owned(),
        from,
        to,
        limit,
        cursor: None,
    }
}

/// Records: one per (metric, time), the first write kept (a replay changes nothing), read
/// in time order within `from..=to`, paged with every record once.
pub async fn records_are_kept_once_and_paged(store: &(impl CandleStore + RecordStore)) {
    store.migrate().await.unwrap();
    let a = "kraken:btc-usd:volume";
    let b = "kraken:eth-usd:volume";
    let batch: Vec<Record> = (0..10)
        .map(|i| record(a, DAY0 + i * MIN, 100.0 + i as f64))
        .chain([record(b, DAY0, 7.0)])
        .collect();
    store.write_records(batch.clone()).await.unwrap();
    // Replayed, and a different value at an existing time: nothing changes.
    store.write_records(batch).await.unwrap();
    store
        .write_records(vec![record(a, DAY0, -1.0)])
        .await
        .unwrap();
    let all = store
        .records(&record_range(a, DAY0, DAY0 + 9 * MIN, 100))
        .await
        .unwrap();
    assert_eq!(all.records.len(), 10);
    assert_eq!(all.records[0], (DAY0, 100.0));
    assert_eq!(all.records[9], (DAY0 + 9 * MIN, 109.0));
    assert_eq!(all.next_cursor, None);
    // Bounds are inclusive on both ends.
    let some = store
        .records(&record_range(a, DAY0 + MIN, DAY0 + 3 * MIN, 100))
        .await
        .unwrap();
    assert_eq!(
        some.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        [DAY0 + MIN, DAY0 + 2 * MIN, DAY0 + 3 * MIN]
    );
    // Pages of 3: every record once, in order.
    let mut range = record_range(a, DAY0, DAY0 + HOUR, 3);
    let mut seen = Vec::new();
    loop {
        let page = store.records(&range).await.unwrap();
        assert!(page.records.len() <= 3);
        seen.extend(page.records.iter().map(|r| r.0));
        match page.next_cursor {
            Some(c) => range.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..10).map(|i| DAY0 + i * MIN).collect::<Vec<_>>());
    // Other metrics are apart; an unknown one is empty.
    let other = store
        .records(&record_range(b, DAY0, DAY0 + HOUR, 10))
        .await
        .unwrap();
    assert_eq!(other.records, [(DAY0, 7.0)]);
    assert!(
        store
            .records(&record_range("kraken:zzz-usd:price", DAY0, DAY0 + HOUR, 10))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    // from after to is an error, not an empty page.
    assert!(
        store
            .records(&record_range(a, DAY0 + 1, DAY0, 10))
            .await
            .is_err()
    );
}

/// Retention: records before the cut are deleted, of every metric, and nothing after it.
pub async fn records_prune_only_the_old(store: &(impl CandleStore + RecordStore)) {
    store.migrate().await.unwrap();
    // More metrics than one prune step visits.
    let batch: Vec<Record> = (0..250)
        .flat_map(|m| {
            let id = format!("binance:c{m:03}-usdt:price");
            (0..4).map(move |i| record(&id, DAY0 + i * HOUR, i as f64))
        })
        .collect();
    store.write_records(batch).await.unwrap();
    let deleted = store.prune_records(DAY0 + 2 * HOUR).await.unwrap();
    assert_eq!(deleted, 250 * 2);
    for m in [0, 99, 100, 249] {
        let page = store
            .records(&record_range(
                &format!("binance:c{m:03}-usdt:price"),
                0,
                i64::MAX,
                10,
            ))
            .await
            .unwrap();
        assert_eq!(
            page.records,
            [(DAY0 + 2 * HOUR, 2.0), (DAY0 + 3 * HOUR, 3.0)]
        );
    }
    assert_eq!(store.prune_records(DAY0 + 2 * HOUR).await.unwrap(), 0);
}

fn key(id: &str, user: &str, byte: u8) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        user_id: user.to_owned(),
        prefix: format!("tck_{byte:02x}"),
        hash: [byte; 32],
        created: DAY0,
        last_used: None,
        revoked: None,
    }
}

fn watch(exchange: &str, pair: &str, metric: &str) -> Watch {
    Watch {
        metric: format!("{exchange}:{pair}:{metric}"),
        exchange: exchange.to_owned(),
        pair: pair.to_owned(),
        created: DAY0,
    }
}

/// Users with several keys, found by digest, revoked one at a time and only by their owner;
/// watchlists per user, paged, and the union of watched pairs per exchange.
pub async fn keys_users_and_watchlists(store: &(impl CandleStore + AccountStore)) {
    store.migrate().await.unwrap();
    for (user, k, byte) in [("usr_a", "key_a1", 1), ("usr_b", "key_b1", 2)] {
        store
            .create_user(
                User {
                    id: user.to_owned(),
                    name: user.to_uppercase(),
                    created: DAY0,
                },
                key(k, user, byte),
            )
            .await
            .unwrap();
    }
    store.add_key(key("key_a2", "usr_a", 3)).await.unwrap();
    // A key for a user that does not exist, and a digest twice, are refused.
    assert!(store.add_key(key("key_x", "usr_x", 9)).await.is_err());
    assert!(store.add_key(key("key_a3", "usr_a", 3)).await.is_err());

    let found = store.key_by_hash([3; 32]).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.user_id.as_str()),
        ("key_a2", "usr_a")
    );
    assert_eq!(found.prefix, "tck_03");
    assert!(store.key_by_hash([7; 32]).await.unwrap().is_none());
    let keys = store.keys("usr_a").await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["key_a1", "key_a2"]
    );

    // Another user cannot revoke it; its owner can, once.
    assert!(!store.revoke_key("usr_b", "key_a1", DAY0 + 1).await.unwrap());
    assert!(store.revoke_key("usr_a", "key_a1", DAY0 + 1).await.unwrap());
    assert!(!store.revoke_key("usr_a", "key_a1", DAY0 + 2).await.unwrap());
    let revoked = store.key_by_hash([1; 32]).await.unwrap().unwrap();
    assert_eq!(revoked.revoked, Some(DAY0 + 1));
    store.touch_key("key_a2", DAY0 + 5).await.unwrap();
    assert_eq!(
        store.key_by_hash([3; 32]).await.unwrap().unwrap().last_used,
        Some(DAY0 + 5)
    );

    // Watchlists.
    for w in [
        watch("kraken", "btc-usd", "volume"),
        watch("kraken", "btc-usd", "price"),
        watch("kraken", "eth-usd", "price"),
        watch("coinbase", "btc-usd", "price"),
    ] {
        assert!(store.watch("usr_a", w).await.unwrap());
    }
    assert!(
        !store
            .watch("usr_a", watch("kraken", "btc-usd", "volume"))
            .await
            .unwrap()
    );
    assert!(
        store
            .watch("usr_b", watch("kraken", "sol-usd", "high"))
            .await
            .unwrap()
    );
    let page = store.watchlist("usr_a", None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|w| w.metric.as_str()).collect::<Vec<_>>(),
        ["coinbase:btc-usd:price", "kraken:btc-usd:price"]
    );
    let rest = store
        .watchlist("usr_a", Some(&page[1].metric), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|w| w.metric.as_str()).collect::<Vec<_>>(),
        ["kraken:btc-usd:volume", "kraken:eth-usd:price"]
    );
    assert_eq!(
        store.watched_pairs("kraken").await.unwrap(),
        ["btc-usd", "eth-usd", "sol-usd"]
    );
    // Another user's entry is not theirs to delete.
    assert!(
        !store
            .unwatch("usr_b", "kraken:eth-usd:price")
            .await
            .unwrap()
    );
    assert!(
        store
            .unwatch("usr_a", "kraken:eth-usd:price")
            .await
            .unwrap()
    );
    assert!(store.unwatch("usr_b", "kraken:sol-usd:high").await.unwrap());
    assert_eq!(store.watched_pairs("kraken").await.unwrap(), ["btc-usd"]);
    assert_eq!(store.watched_pairs("coinbase").await.unwrap(), ["btc-usd"]);
    assert!(store.watched_pairs("binance").await.unwrap().is_empty());
}

fn user(id: &str) -> (User, ApiKey) {
    (
        User {
            id: id.to_owned(),
            name: id.to_owned(),
            created: DAY0,
        },
        ApiKey {
            id: format!("key_{id}"),
            user_id: id.to_owned(),
            prefix: "tck_".to_owned(),
            hash: [id.len() as u8 + id.as_bytes()[4]; 32],
            created: DAY0,
            last_used: None,
            revoked: None,
        },
    )
}

fn channel(id: &str, user_id: &str, url: &str) -> Channel {
    Channel {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        kind: "webhook".to_owned(),
        target: url.to_owned(),
        secret: format!("whsec_{id}"),
        previous_secret: None,
        previous_until: None,
        disabled: None,
        created: DAY0,
    }
}

fn rule(id: &str, user_id: &str, metric: &str) -> Rule {
    Rule {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        metric: metric.to_owned(),
        condition: r#"{"type":"above_average","factor":3,"window":"1h"}"#.to_owned(),
        channel_id: String::new(),
        created: DAY0,
    }
}

fn alert(id: &str, user_id: &str, rule_id: &str, time: i64, message_id: &str) -> Alert {
    Alert {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        rule_id: rule_id.to_owned(),
        metric: "kraken:btc-usd:volume".to_owned(),
        kind: "fired".to_owned(),
        time,
        value: 500.0,
        average: Some(100.0),
        dedupe: format!("{rule_id}:fired:{time}"),
        message_id: message_id.to_owned(),
    }
}

fn message(id: &str, user_id: &str, channel_id: &str, at: i64) -> Message {
    Message {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        channel_id: channel_id.to_owned(),
        body: format!("{{\"id\":\"{id}\"}}"),
        created: at,
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt: Some(at),
    }
}

/// Rules share a user's channel of the same target; rules are scoped to their user; a
/// decision is stored once (its dedupe key), and a message none of whose alerts is new is not
/// stored; due messages come soonest first; attempts are kept and move the message on; a 410
/// disables the channel and its pending messages; a rotation keeps the previous secret.
pub async fn alerts_rules_outbox_and_attempts(
    store: &(impl CandleStore + AccountStore + AlertStore),
) {
    store.migrate().await.unwrap();
    for id in ["usr_a", "usr_b"] {
        let (u, k) = user(id);
        store.create_user(u, k).await.unwrap();
    }
    let hook = "https://hooks.example/a";
    let (r1, c1) = store
        .create_rule(
            rule("rul_1", "usr_a", "kraken:btc-usd:volume"),
            channel("chn_1", "usr_a", hook),
        )
        .await
        .unwrap();
    assert_eq!((r1.channel_id.as_str(), c1.id.as_str()), ("chn_1", "chn_1"));
    // The same target: the channel (and its secret) is shared.
    let (r2, c2) = store
        .create_rule(
            rule("rul_2", "usr_a", "kraken:eth-usd:volume"),
            channel("chn_2", "usr_a", hook),
        )
        .await
        .unwrap();
    assert_eq!(
        (r2.channel_id.as_str(), c2.secret.as_str()),
        ("chn_1", "whsec_chn_1")
    );
    // Another user's same URL is their own channel.
    let (r3, _) = store
        .create_rule(
            rule("rul_3", "usr_b", "kraken:btc-usd:volume"),
            channel("chn_3", "usr_b", hook),
        )
        .await
        .unwrap();
    assert_eq!(r3.channel_id, "chn_3");
    let mine: Vec<String> = store
        .rules("usr_a", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(mine, ["rul_1", "rul_2"]);
    let page: Vec<String> = store
        .rules("usr_a", Some("rul_1"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(page, ["rul_2"]);
    assert!(store.rule("usr_b", "rul_1").await.unwrap().is_none());
    assert_eq!(store.all_rules().await.unwrap().len(), 3);

    // A decision, committed; the same decision again stores nothing.
    let t = DAY0 + HOUR;
    let decision = Decision {
        states: vec![AlertState {
            rule_id: "rul_1".to_owned(),
            firing: true,
            pending_since: None,
            last_fired: Some(t),
            last_sample: t,
        }],
        alerts: vec![
            alert("alr_1", "usr_a", "rul_1", t, "msg_1"),
            alert("alr_2", "usr_a", "rul_2", t, "msg_1"),
        ],
        messages: vec![message("msg_1", "usr_a", "chn_1", t)],
    };
    assert_eq!(
        store.commit_alerts(decision.clone()).await.unwrap(),
        ["msg_1"]
    );
    let again = Decision {
        alerts: vec![
            alert("alr_1b", "usr_a", "rul_1", t, "msg_1b"),
            alert("alr_2b", "usr_a", "rul_2", t, "msg_1b"),
        ],
        messages: vec![message("msg_1b", "usr_a", "chn_1", t)],
        ..decision.clone()
    };
    assert!(store.commit_alerts(again).await.unwrap().is_empty());
    let states = store.alert_states().await.unwrap();
    assert_eq!(states, decision.states);
    assert_eq!(store.pending().await.unwrap(), (1, Some(t)));
    // Not due before its time; due at it.
    assert!(store.due_messages(t - 1, 10).await.unwrap().is_empty());
    let due = store.due_messages(t, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    // One attempt takes it; a second claim of the same attempt does not.
    assert!(store.claim("msg_1", 0, t, t + 1).await.unwrap());
    assert!(!store.claim("msg_1", 0, t, t + 1).await.unwrap());
    // Due again once the claim lapses (a process that died during the attempt).
    assert!(!store.claim("msg_1", 1, t + 1, t + 1).await.unwrap());
    assert!(store.claim("msg_1", 0, t + 1, t).await.unwrap());
    assert_eq!(
        (due[0].0.id.as_str(), due[0].1.id.as_str()),
        ("msg_1", "chn_1")
    );

    // A failed attempt moves it on; a delivered one takes it out.
    store
        .record_attempt(
            Attempt {
                message_id: "msg_1".to_owned(),
                attempt: 1,
                time: t,
                status_code: Some(503),
                outcome: "http 503".to_owned(),
            },
            "chn_1",
            Next::Retry(t + 5_000),
        )
        .await
        .unwrap();
    assert!(store.due_messages(t + 4_999, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_messages(t + 5_000, 10).await.unwrap()[0]
            .0
            .attempts,
        1
    );
    store
        .record_attempt(
            Attempt {
                message_id: "msg_1".to_owned(),
                attempt: 2,
                time: t + 5_000,
                status_code: Some(200),
                outcome: "delivered".to_owned(),
            },
            "chn_1",
            Next::Delivered,
        )
        .await
        .unwrap();
    assert_eq!(store.pending().await.unwrap(), (0, None));

    // The user's alerts, newest first, with their message and both attempts; paged.
    let later = Decision {
        states: vec![],
        alerts: vec![alert("alr_3", "usr_a", "rul_1", t + 2 * HOUR, "msg_2")],
        messages: vec![message("msg_2", "usr_a", "chn_1", t + 2 * HOUR)],
    };
    store.commit_alerts(later).await.unwrap();
    let page = store.alerts("usr_a", None, 2).await.unwrap();
    let ids: Vec<&str> = page.alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["alr_3", "alr_2"]);
    let rest = store.alerts("usr_a", page.next.clone(), 2).await.unwrap();
    let ids: Vec<&str> = rest.alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["alr_1"]);
    assert!(rest.next.is_none());
    assert_eq!(rest.messages[0].status, "delivered");
    let tries: Vec<(i32, Option<i32>)> = rest
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(tries, [(1, Some(503)), (2, Some(200))]);
    assert!(
        store
            .alerts("usr_b", None, 10)
            .await
            .unwrap()
            .alerts
            .is_empty()
    );

    // 410: the channel and its pending messages are disabled.
    let more = Decision {
        states: vec![],
        alerts: vec![alert("alr_4", "usr_a", "rul_2", t + 3 * HOUR, "msg_3")],
        messages: vec![message("msg_3", "usr_a", "chn_1", t + 3 * HOUR)],
    };
    store.commit_alerts(more).await.unwrap();
    store
        .record_attempt(
            Attempt {
                message_id: "msg_2".to_owned(),
                attempt: 1,
                time: t + 3 * HOUR,
                status_code: Some(410),
                outcome: "gone".to_owned(),
            },
            "chn_1",
            Next::Disabled,
        )
        .await
        .unwrap();
    assert_eq!(store.pending().await.unwrap(), (0, None));
    let (_, c) = store.rule("usr_a", "rul_1").await.unwrap().unwrap();
    assert_eq!(c.disabled, Some(t + 3 * HOUR));
    // An attempt of a message the 410 disabled meanwhile does not bring it back.
    store
        .record_attempt(
            Attempt {
                message_id: "msg_3".to_owned(),
                attempt: 1,
                time: t + 3 * HOUR,
                status_code: Some(503),
                outcome: "http 503".to_owned(),
            },
            "chn_1",
            Next::Retry(t + 3 * HOUR + 5_000),
        )
        .await
        .unwrap();
    // Alerts decided for a disabled channel are kept, their message disabled, never due.
    let late = Decision {
        states: vec![],
        alerts: vec![alert("alr_5", "usr_a", "rul_2", t + 3 * HOUR + 1, "msg_4")],
        messages: vec![message("msg_4", "usr_a", "chn_1", t + 3 * HOUR + 1)],
    };
    assert_eq!(store.commit_alerts(late).await.unwrap(), ["msg_4"]);
    assert_eq!(store.pending().await.unwrap(), (0, None));
    assert!(store.due_messages(i64::MAX, 10).await.unwrap().is_empty());
    // A new rule on the same target enables it again.
    let (_, c) = store
        .create_rule(
            rule("rul_4", "usr_a", "kraken:btc-usd:price"),
            channel("chn_9", "usr_a", hook),
        )
        .await
        .unwrap();
    assert_eq!((c.id.as_str(), c.disabled), ("chn_1", None));

    // Rotation: the old secret is kept as the previous one until the grace ends.
    let Rotation::Rotated(c) = store
        .rotate_secret("usr_a", "rul_2", "whsec_new".to_owned(), t + 4 * HOUR, t)
        .await
        .unwrap()
    else {
        panic!("rotated");
    };
    assert_eq!(c.secret, "whsec_new");
    assert_eq!(c.previous_secret.as_deref(), Some("whsec_chn_1"));
    assert_eq!(c.previous_until, Some(t + 4 * HOUR));
    // Another rotation within the grace would drop the first secret at once: refused.
    assert_eq!(
        store
            .rotate_secret(
                "usr_a",
                "rul_2",
                "whsec_newer".to_owned(),
                t + 5 * HOUR,
                t + HOUR
            )
            .await
            .unwrap(),
        Rotation::InGrace(t + 4 * HOUR)
    );
    assert!(matches!(
        store
            .rotate_secret(
                "usr_a",
                "rul_2",
                "whsec_newer".to_owned(),
                t + 9 * HOUR,
                t + 5 * HOUR
            )
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        store
            .rotate_secret("usr_b", "rul_2", "whsec_x".to_owned(), 0, 0)
            .await
            .unwrap(),
        Rotation::NoRule
    );

    // Deleting: only one's own, and its state goes with it.
    assert!(!store.delete_rule("usr_b", "rul_1").await.unwrap());
    assert!(store.delete_rule("usr_a", "rul_1").await.unwrap());
    assert!(!store.delete_rule("usr_a", "rul_1").await.unwrap());
    assert!(store.alert_states().await.unwrap().is_empty());
}
