//! The backfill against CryptoCompare's recorded bodies (`testdata/upstream/cryptocompare/`):
//! every stored candle equals its row of the body (read here independently, with serde_json),
//! zero-filled rows are skipped, error bodies are typed errors, a rate limit is waited out,
//! a restart fetches nothing again, and a recorded candle is never overwritten — on SQLite
//! and on PostgreSQL.

mod common;

use common::{Db, Fake, TIMEOUT, all, backfill, counter, never};
use serde_json::Value;
use topcoins_backfill::client::{self, HISTODAY_PATH, HISTOHOUR_PATH};
use topcoins_backfill::{Histo, Limits, Stop};
use topcoins_history::{Batch, CandleStore, Interval, Observation, Sample, Source};
use topcoins_upstream::UpstreamErrorKind;
use topcoins_upstream::testing::fixture;

const DAY: &str = "cryptocompare/v2_histoday_BTC_USD_limit7_2021-11-21.json";
const HOUR: &str = "cryptocompare/v2_histohour_BTC_USD_limit24_2021-11-21.json";

/// The depth of the recorded bodies (7 days, 24 hours): one page completes each series.
fn fixture_limits() -> Limits {
    Limits {
        depth_days: 7,
        depth_hours: 24,
        ..Limits::default()
    }
}

/// The recorded histoday body with its first `n` rows zero-filled, as CryptoCompare fills
/// the days before a coin had data (no recorded body has such rows; the shape is the one
/// documented and reported: every price and volume 0, `time` kept).
fn with_zero_filled_days(n: usize) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture(DAY)).unwrap();
    for row in body["Data"]["Data"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .take(n)
    {
        for field in ["high", "low", "open", "volumefrom", "volumeto", "close"] {
            row[field] = 0.into();
        }
    }
    serde_json::to_vec(&body).unwrap()
}

/// Stored candles equal the body's non-zero rows, one to one (a recorded candle, which wins
/// its bucket, aside).
async fn assert_stored_equal_body(store: &impl CandleStore, body: &[u8], interval: Interval) {
    let body: Value = serde_json::from_slice(body).unwrap();
    let rows: Vec<&Value> = body["Data"]["Data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["close"].as_f64().unwrap() != 0.0)
        .collect();
    let stored = all(store, "BTC", interval).await;
    assert_eq!(stored.len(), rows.len(), "{interval}");
    for (candle, row) in stored.iter().zip(rows) {
        let f = |k: &str| row[k].as_f64().unwrap();
        assert_eq!(candle.time, row["time"].as_i64().unwrap() * 1000);
        if candle.source == Source::Recorded {
            continue;
        }
        assert_eq!(candle.source, Source::CryptoCompare);
        let p = candle.price.unwrap();
        assert_eq!(
            (p.open, p.high, p.low, p.close),
            (f("open"), f("high"), f("low"), f("close")),
            "{interval} at {}",
            candle.time
        );
        assert_eq!(
            (candle.volume_from, candle.volume_to),
            (Some(f("volumefrom")), Some(f("volumeto")))
        );
    }
}

async fn fixtures_are_stored_as_given_and_a_restart_fetches_nothing(db: Db) {
    let fake = Fake::default();
    let zeroed = with_zero_filled_days(3);
    fake.script(HISTODAY_PATH, vec![zeroed.clone()]);
    fake.script(HISTOHOUR_PATH, vec![fixture(HOUR)]);
    let url = fake.start().await;

    // A recorded candle in one of the body's hours is there first, and stays.
    let store = db.open().await;
    let store = store.into_store();
    let recorded_at = 1_637_452_800_000 + 5 * 60_000; // in one of the body's hours and days
    store
        .apply(Batch::from_samples(&[Sample {
            symbol: "BTC".into(),
            time: recorded_at,
            observation: Observation::Price {
                price_usd: 1.5,
                market_cap_usd: None,
            },
        }]))
        .await
        .unwrap();

    let (backfill, registry) = backfill(&url, 10, fixture_limits());
    let report = backfill.run(&store, &["btc", "BTC"], never()).await;
    assert!(report.stopped.is_none(), "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.calls, 2, "one page per interval: {report:?}");
    assert_eq!(fake.hits(), 2);
    assert_eq!(report.zero_filled, 3);
    assert_eq!(report.candles, 5 + 25);
    assert_eq!((report.up_to_date, report.pending), (2, 0));
    assert_eq!(
        counter(
            &registry,
            "topcoins_backfill_zero_filled_rows_total",
            &[("interval", "1d")]
        ),
        3.0
    );
    assert_eq!(
        counter(
            &registry,
            "topcoins_upstream_credits_used_total",
            &[("provider", "cryptocompare")]
        ),
        2.0
    );
    for (path, q) in fake.queries.lock().unwrap().iter() {
        assert_eq!(q.get("fsym").map(String::as_str), Some("BTC"), "{path}");
        assert_eq!(q.get("tsym").map(String::as_str), Some("USD"));
        assert!(!q.contains_key("api_key"), "the key travels in a header");
    }

    assert_stored_equal_body(&store, &zeroed, Interval::D1).await;
    let days = all(&store, "BTC", Interval::D1).await;
    assert_eq!(
        days.iter().filter(|c| c.source == Source::Recorded).count(),
        1
    );
    // The hours: every one as given, except the one recorded here, which wins its bucket.
    let hours = all(&store, "BTC", Interval::H1).await;
    let mine = hours.iter().find(|c| c.time == 1_637_452_800_000).unwrap();
    assert_eq!(mine.source, Source::Recorded);
    assert_eq!(mine.price.unwrap().close, 1.5);
    let body: Value = serde_json::from_slice(&fixture(HOUR)).unwrap();
    let rows = body["Data"]["Data"].as_array().unwrap();
    assert_eq!(hours.len(), rows.len());
    for (candle, row) in hours.iter().zip(rows) {
        if candle.source == Source::Recorded {
            continue;
        }
        let p = candle.price.unwrap();
        assert_eq!(p.close, row["close"].as_f64().unwrap());
        assert_eq!(p.open, row["open"].as_f64().unwrap());
        assert_eq!(candle.volume_to, row["volumeto"].as_f64());
    }

    // Restart: the process and the store opened again. Nothing is fetched again.
    drop((backfill, store));
    let store = db.open().await.into_store();
    let (backfill, _) = common::backfill(&url, 10, fixture_limits());
    let report = backfill.run(&store, &["BTC"], never()).await;
    assert_eq!(report.calls, 0, "{report:?}");
    assert_eq!(fake.hits(), 2);
    assert_eq!((report.up_to_date, report.pending), (2, 0));
    assert_eq!(all(&store, "BTC", Interval::D1).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_sqlite() {
    tokio::time::timeout(
        TIMEOUT,
        fixtures_are_stored_as_given_and_a_restart_fetches_nothing(Db::sqlite().await),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_postgres() {
    tokio::time::timeout(
        TIMEOUT,
        fixtures_are_stored_as_given_and_a_restart_fetches_nothing(Db::postgres().await),
    )
    .await
    .unwrap();
}

#[test]
fn recorded_bodies_parse_to_every_row() {
    for (file, histo, rows) in [(DAY, Histo::Day, 8), (HOUR, Histo::Hour, 25)] {
        let page = client::parse(200, &fixture(file), "BTC", histo).unwrap();
        assert_eq!(page.candles.len(), rows, "{file}");
        assert_eq!(page.zero_filled, 0);
        assert!(!page.data_starts);
        let body: Value = serde_json::from_slice(&fixture(file)).unwrap();
        let data = &body["Data"];
        assert_eq!(
            page.span,
            Some((
                data["TimeFrom"].as_i64().unwrap() * 1000,
                data["TimeTo"].as_i64().unwrap() * 1000
            ))
        );
        for c in &page.candles {
            assert_eq!(c.interval, histo.interval());
            assert_eq!(c.interval.bucket_start(c.time), c.time);
        }
    }
}

#[test]
fn recorded_error_bodies_are_typed_errors() {
    for (file, kind) in [
        (
            "cryptocompare/error_api_key_required_type1.json",
            UpstreamErrorKind::Auth,
        ),
        (
            "cryptocompare/error_missing_param_top_mktcapfull.json",
            UpstreamErrorKind::Provider { code: 2 },
        ),
        (
            "cryptocompare/error_path_does_not_exist_totalvolumefull.json",
            UpstreamErrorKind::Provider { code: 0 },
        ),
    ] {
        for histo in Histo::ALL {
            let e = client::parse(200, &fixture(file), "BTC", histo).unwrap_err();
            assert_eq!(e.kind, kind, "{file}");
        }
    }
    // The allowance bodies are successes of another endpoint: not a histo series.
    for file in [
        "cryptocompare/stats_rate_limit_nokey.json",
        "cryptocompare/stats_rate_limit_withkey.json",
    ] {
        let e = client::parse(200, &fixture(file), "BTC", Histo::Day).unwrap_err();
        assert!(
            matches!(&e.kind, UpstreamErrorKind::Malformed { path } if path == "Data.Data"),
            "{file}: {e:?}"
        );
    }
    // The rate-limit error, in the shape the allowance body documents.
    let limited = br#"{"Response":"Error","Message":"Rate limit excedeed!","HasWarning":false,"Type":99,"RateLimit":{"calls_made":{"second":51,"minute":60,"hour":138,"day":475,"month":4113},"max_calls":{"second":50,"minute":2500,"hour":25000,"day":50000,"month":100000}},"Data":{}}"#;
    let e = client::parse(200, limited, "BTC", Histo::Hour).unwrap_err();
    assert!(matches!(e.kind, UpstreamErrorKind::RateLimited { .. }));
    let e = client::parse(429, b"Too Many Requests", "BTC", Histo::Hour).unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::Status(429));
}

const RATE_LIMITED: &[u8] =
    br#"{"Response":"Error","Message":"Rate limit excedeed!","Type":99,"RateLimit":{},"Data":{}}"#;

#[tokio::test]
async fn a_rate_limit_is_waited_out_and_too_many_end_the_run() {
    let db = Db::sqlite().await;
    let store = db.open().await.into_store();
    let fake = Fake::default();
    fake.script(
        HISTODAY_PATH,
        vec![RATE_LIMITED.to_vec(), RATE_LIMITED.to_vec(), fixture(DAY)],
    );
    fake.script(HISTOHOUR_PATH, vec![RATE_LIMITED.to_vec()]);
    let url = fake.start().await;
    let (backfill, registry) = backfill(&url, 1, fixture_limits());
    let report = tokio::time::timeout(TIMEOUT, backfill.run(&store, &["BTC"], never()))
        .await
        .unwrap();
    // Days: two waits, then the body. Hours: three rate limits in a row end the run.
    assert!(
        matches!(report.stopped, Some(Stop::RateLimited(3))),
        "{report:?}"
    );
    assert_eq!(report.calls, 3 + 3);
    assert_eq!(all(&store, "BTC", Interval::D1).await.len(), 8);
    assert!(all(&store, "BTC", Interval::H1).await.is_empty());
    assert_eq!((report.up_to_date, report.pending), (1, 1));
    assert_eq!(
        counter(&registry, "topcoins_backfill_rate_limited_total", &[]),
        5.0
    );

    // The next run does only the hours.
    fake.script(HISTOHOUR_PATH, vec![fixture(HOUR)]);
    let before = fake.hits();
    let report = backfill.run(&store, &["BTC"], never()).await;
    assert!(report.stopped.is_none(), "{report:?}");
    assert_eq!(fake.hits() - before, 1);
    assert_eq!(all(&store, "BTC", Interval::H1).await.len(), 25);
}

#[tokio::test]
async fn refused_bodies_store_nothing_and_are_not_asked_again_at_once() {
    let db = Db::sqlite().await;
    let store = db.open().await.into_store();
    let fake = Fake::default();
    let mut broken: Value = serde_json::from_slice(&fixture(DAY)).unwrap();
    broken["Data"]["Data"][3]["low"] = (-1.0).into();
    fake.script(HISTODAY_PATH, vec![serde_json::to_vec(&broken).unwrap()]);
    fake.script(
        HISTOHOUR_PATH,
        vec![br#"{"Response":"Error","Message":"There is no data for the symbol BTC .","Type":2,"Data":{}}"#.to_vec()],
    );
    let url = fake.start().await;
    let (backfill, registry) = backfill(&url, 1, fixture_limits());
    let report = backfill.run(&store, &["BTC"], never()).await;
    assert!(report.stopped.is_none());
    assert_eq!(report.failures.len(), 2, "{report:?}");
    assert!(matches!(
        report.failures[0].error.kind,
        UpstreamErrorKind::Rejected {
            reason: "bad_number"
        }
    ));
    assert_eq!(
        report.failures[1].error.kind,
        UpstreamErrorKind::Provider { code: 2 }
    );
    assert!(all(&store, "BTC", Interval::D1).await.is_empty());
    assert!(store.backfill_progress().await.unwrap().is_empty());
    assert_eq!(
        counter(
            &registry,
            "topcoins_upstream_rejected_total",
            &[("provider", "cryptocompare"), ("reason", "bad_number")]
        ),
        1.0
    );
    let hits = fake.hits();
    let report = backfill.run(&store, &["BTC"], never()).await;
    assert_eq!(fake.hits(), hits, "{report:?}");
    assert_eq!(report.pending, 2);
}

#[tokio::test]
async fn shutdown_ends_a_run_between_calls() {
    let db = Db::sqlite().await;
    let store = db.open().await.into_store();
    let fake = Fake::default();
    fake.script(HISTODAY_PATH, vec![fixture(DAY)]);
    fake.script(HISTOHOUR_PATH, vec![fixture(HOUR)]);
    let url = fake.start().await;
    let (backfill, _) = backfill(&url, 5, fixture_limits());
    let report = backfill.run(&store, &["BTC", "ETH"], async {}).await;
    assert!(matches!(report.stopped, Some(Stop::Shutdown)), "{report:?}");
    assert_eq!(fake.hits(), 0);
    assert_eq!(report.pending, 4);
}

/// The recorder runs a backfill on a task of its own: the run must be `Send`.
#[allow(dead_code)]
fn a_run_can_be_spawned(
    backfill: &'static topcoins_backfill::Backfill,
    store: &'static topcoins_history::Store,
) {
    let top: &'static [compact_str::CompactString] = &[];
    tokio::spawn(backfill.run(store, top, never()));
}
