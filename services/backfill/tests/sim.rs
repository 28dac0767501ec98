//! The backfill against the real simulator, in-process on a free port: paging with `toTs`
//! backwards to the depth or to a coin's first data, forwards from the newest bucket when it
//! is due; a coin newly in the top set is backfilled alone; a restart asks nothing again
//! (counted by the simulator itself) — on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::{Db, TIMEOUT, all, backfill, never};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topcoins_backfill::Limits;
use topcoins_history::{CandleStore, Interval};
use topcoins_sim::SimConfig;
use topcoins_sim::market::Market;

const COINS: usize = 40;
const SEED: u64 = 7;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Pages of 64 buckets, 200 days and 150 hours deep: several pages per series.
fn paged() -> Limits {
    Limits {
        depth_days: 200,
        depth_hours: 150,
        page: 64,
        ..Limits::default()
    }
}

async fn start_sim() -> String {
    start_sim_ticking(Duration::ZERO).await
}

async fn start_sim_ticking(tick: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = SimConfig {
        sim_coins: COINS,
        sim_seed: SEED,
        sim_tick: tick,
        sim_pairs: None,
    };
    tokio::spawn(topcoins_sim::run(config, listener, std::future::pending()));
    url
}

/// CryptoCompare requests the simulator has served, from its `/sim/status`.
async fn sim_requests(url: &str) -> u64 {
    let addr = url.strip_prefix("http://").unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            format!("GET /sim/status HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    // A small body, sent whole (no chunking for a JSON of known length).
    let status: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    status["requests"]["cryptocompare"].as_u64().unwrap()
}

/// Candles of a series are one per bucket, contiguous, newest last.
fn assert_contiguous(candles: &[topcoins_history::Candle], step: i64, what: &str) {
    for pair in candles.windows(2) {
        assert_eq!(
            pair[1].time - pair[0].time,
            step,
            "{what}: a gap or a repeat"
        );
    }
}

async fn paging_entering_coins_and_restart(db: Db) {
    let url = start_sim().await;
    // The simulator's market, by the same seed: its CryptoCompare top list and prices.
    let market = Market::new(COINS, SEED);
    let top: Vec<&topcoins_sim::market::Coin> = market
        .by_cc_volume()
        .into_iter()
        .filter(|c| c.on_cryptocompare)
        .collect();
    let symbols: Vec<&str> = top.iter().map(|c| c.cc_symbol.as_str()).collect();

    let store = db.open().await.into_store();
    let (first, _) = backfill(&url, 3, paged());
    let report = first.run(&store, &symbols, never()).await;
    assert!(
        report.stopped.is_none() && report.failures.is_empty(),
        "{report:?}"
    );
    assert_eq!((report.up_to_date, report.pending), (6, 0));
    assert_eq!(sim_requests(&url).await, report.calls);
    let mut zero_filled = 0;
    for coin in &top[..3] {
        let days = all(&store, &coin.cc_symbol, Interval::D1).await;
        let hours = all(&store, &coin.cc_symbol, Interval::H1).await;
        assert_contiguous(&days, DAY_MS, &coin.cc_symbol);
        assert_contiguous(&hours, HOUR_MS, &coin.cc_symbol);
        // Every bucket down to the depth, but the days before the coin had data.
        assert_eq!(hours.len(), 151, "{}", coin.cc_symbol);
        assert!(days.len() <= 201 && !days.is_empty(), "{}", coin.cc_symbol);
        zero_filled += 201 - days.len() as u64;
        // The history ends at the market's price.
        for last in [days.last().unwrap(), hours.last().unwrap()] {
            let close = last.price.unwrap().close;
            assert!(
                (close - coin.price).abs() <= coin.price * 1e-6 + 0.01,
                "{}: last close {close}, price {}",
                coin.cc_symbol,
                coin.price
            );
        }
        assert_eq!(
            days.last().unwrap().time,
            hours.last().unwrap().time / DAY_MS * DAY_MS
        );
    }
    // Zero-filled days are skipped; paging stops in the page where they start, so fewer are
    // seen than the depth leaves out.
    assert!(report.zero_filled <= zero_filled);
    assert_eq!(report.zero_filled == 0, zero_filled == 0);
    let before = store.backfill_progress().await.unwrap();
    assert_eq!(before.len(), 6);
    assert!(before.iter().all(|p| p.complete));

    // The fourth coin overtakes the third and enters the top 3: only it is fetched (the
    // third keeps its history for when it is back).
    let served = sim_requests(&url).await;
    let overtaken = [symbols[0], symbols[1], symbols[3], symbols[2]];
    let report = first.run(&store, &overtaken, never()).await;
    assert!(report.stopped.is_none(), "{report:?}");
    assert!(report.calls >= 2, "{report:?}");
    assert_eq!(sim_requests(&url).await - served, report.calls);
    let after = store.backfill_progress().await.unwrap();
    assert_eq!(after.len(), 8);
    for p in &before {
        assert!(after.contains(p), "{p:?} was fetched again");
    }
    assert_eq!(all(&store, symbols[3], Interval::H1).await.len(), 151);

    // A restart, with the fourth coin ranked first now: nothing is asked again.
    drop((first, store));
    let store = db.open().await.into_store();
    let (second, _) = backfill(&url, 4, paged());
    let served = sim_requests(&url).await;
    let mut reordered = symbols[..4].to_vec();
    reordered.rotate_right(1);
    let report = second.run(&store, &reordered, never()).await;
    assert_eq!(report.calls, 0, "{report:?}");
    assert_eq!(sim_requests(&url).await, served);
    assert_eq!((report.up_to_date, report.pending), (8, 0));

    // When a refresh is due, the newest end is asked forwards from the newest bucket: one
    // call per series here (less than a page since), the rows unchanged.
    let hours_before = all(&store, symbols[0], Interval::H1).await;
    let (third, _) = backfill(
        &url,
        4,
        Limits {
            refresh: Duration::ZERO,
            ..paged()
        },
    );
    let report = third.run(&store, &symbols[..4], never()).await;
    assert!(report.stopped.is_none(), "{report:?}");
    assert_eq!(report.calls, 8, "{report:?}");
    assert_eq!(all(&store, symbols[0], Interval::H1).await, hours_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_sqlite() {
    tokio::time::timeout(
        TIMEOUT,
        paging_entering_coins_and_restart(Db::sqlite().await),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_postgres() {
    tokio::time::timeout(
        TIMEOUT,
        paging_entering_coins_and_restart(Db::postgres().await),
    )
    .await
    .unwrap();
}

/// Pages fetched while the market moves join: each candle opens at the close before it, across
/// page boundaries too (the simulator keeps closed buckets fixed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_join_while_the_market_ticks() {
    let url = start_sim_ticking(Duration::from_millis(5)).await;
    let market = Market::new(COINS, SEED);
    let symbols: Vec<&str> = market
        .by_cc_volume()
        .into_iter()
        .filter(|c| c.on_cryptocompare)
        .map(|c| c.cc_symbol.as_str())
        .take(2)
        .collect();
    let db = Db::sqlite().await;
    let store = db.open().await.into_store();
    let (backfill, _) = backfill(
        &url,
        2,
        Limits {
            page: 16,
            ..paged()
        },
    );
    let report = tokio::time::timeout(TIMEOUT, backfill.run(&store, &symbols, never()))
        .await
        .unwrap();
    assert!(
        report.stopped.is_none() && report.failures.is_empty(),
        "{report:?}"
    );
    assert!(report.calls > 20, "{report:?}");
    for symbol in &symbols {
        for (interval, step) in [(Interval::D1, DAY_MS), (Interval::H1, HOUR_MS)] {
            let candles = all(&store, symbol, interval).await;
            assert_contiguous(&candles, step, symbol);
            // The newest candle was open while the market moved: the ones before it join.
            let closed = &candles[..candles.len() - 1];
            for pair in closed.windows(2) {
                let (a, b) = (pair[0].price.unwrap(), pair[1].price.unwrap());
                assert_eq!(b.open, a.close, "{symbol} {interval} at {}", pair[1].time);
            }
        }
    }
}
