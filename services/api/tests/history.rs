//! History through HTTP: candles and the 24 h change, with a node started by
//! `topcoins_api::run` against a real nats-server and a real database (SQLite in a temporary
//! directory; PostgreSQL from the testkit harness), filled directly with
//! `CandleStore::apply`. The test plays the actors: snapshots put in the store and announced.
//!
//! - pagination returns every row once, JSON and CSV;
//! - bad input gets the JSON error shape, 400 or 404, and is counted;
//! - ETag and `If-None-Match`; a past range is read from the database once;
//! - the open bucket shows the latest prices notice before the database has it;
//! - `change_24h_pct` equals the hand computation, on `GET /` and `GET /v1/coins/{symbol}`;
//! - the database down (PostgreSQL stopped; an SQLite file that cannot be opened; none
//!   configured): history answers 503 while `GET /` serves, and a cached past range still 200.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::time::timeout;
use topcoins_api::ApiConfig;
use topcoins_bus::{SnapshotStore, TraceContext};
use topcoins_history::{Batch, CandleStore, DatabaseUrl, Observation, Sample, Store};
use topcoins_schemas::api::{CandlesResponse, CoinResponse, TopResponse};
use topcoins_schemas::{
    HashNotice, PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, Snapshot,
};
use topcoins_testkit::{NatsServer, Postgres};

use common::until;

const WAIT: Duration = Duration::from_secs(30);
/// 2025-12-01T00:00:00Z: well in the past, so its ranges are immutable.
const DAY0: i64 = 1_764_547_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const CANDLES: &str = "/v1/coins/{symbol}/candles";

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn prices(btc: f64) -> PriceSnapshot {
    let coin = |id: &str, symbol: &str, price_usd, cap| PricedCoin {
        id: id.into(),
        symbol: symbol.into(),
        name: symbol.into(),
        price_usd,
        market_cap_usd: cap,
    };
    PriceSnapshot::new(
        "test",
        vec![
            coin("1", "BTC", btc, Some(1e12)),
            coin("2", "ETH", 2.0, None),
        ],
    )
    .expect("valid")
}

fn ranking() -> RankingSnapshot {
    let coin = |id: &str, symbol: &str, volume| RankedCoin {
        id: id.into(),
        symbol: symbol.into(),
        name: format!("{symbol} coin").into(),
        volume_24h_usd: Some(volume),
        price_usd: None,
    };
    RankingSnapshot::new(
        "test",
        vec![coin("btc", "BTC", 5e9), coin("eth", "ETH", 1e9)],
    )
    .expect("valid")
}

fn sample(symbol: &str, time: i64, price_usd: f64) -> Sample {
    Sample {
        symbol: symbol.into(),
        time,
        observation: Observation::Price {
            price_usd,
            market_cap_usd: None,
        },
    }
}

/// The test's own connection to the bus, playing the actors.
struct Publisher {
    store: SnapshotStore,
}

impl Publisher {
    async fn connect(server: &NatsServer) -> Result<Self> {
        let client = timeout(WAIT, async_nats::connect(server.url())).await??;
        let store = timeout(WAIT, SnapshotStore::open(client)).await??;
        Ok(Self { store })
    }

    async fn publish<S: Snapshot>(&self, snapshot: &S) -> Result<()> {
        let (bytes, hash) = snapshot.encode();
        timeout(WAIT, self.store.put(hash, &bytes)).await??;
        let latest = timeout(WAIT, self.store.latest(S::KIND)).await??;
        let notice = HashNotice {
            hash,
            as_of: time::OffsetDateTime::now_utc(),
            count: snapshot.len() as u64,
            source: "test".into(),
            follows: Some(latest.map_or(0, |l| l.sequence)),
        };
        timeout(
            WAIT,
            self.store.announce(S::KIND, &notice, &TraceContext::new()),
        )
        .await??;
        Ok(())
    }
}

/// An API node running in this process, with the history database `database_url`.
struct Node(common::Node);

impl std::ops::Deref for Node {
    type Target = common::Node;

    fn deref(&self) -> &common::Node {
        &self.0
    }
}

impl Node {
    async fn start(nats_url: &str, database_url: Option<&str>) -> Result<Self> {
        let config = ApiConfig {
            database_url: database_url.map(|u| u.parse()).transpose()?,
            ..ApiConfig::default()
        };
        Ok(Self(common::Node::start(nats_url, config).await?))
    }

    async fn stop(self) -> Result<()> {
        self.0.stop().await
    }

    fn reads(&self) -> f64 {
        self.metric("topcoins_api_history_reads_total", &[])
    }

    /// `GET /` once it serves 200.
    async fn top(&self) -> Result<TopResponse> {
        until("GET / to serve", || async {
            let a = self.get("/").await?;
            (a.status == 200).then(|| a.json()).transpose()
        })
        .await
    }
}

/// A migrated SQLite database in a temporary directory, and its URL.
async fn sqlite() -> Result<(tempfile::TempDir, Store, String)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("history.db").display());
    let store = Store::open(&url.parse::<DatabaseUrl>()?).await?;
    store.migrate().await?;
    Ok((dir, store, url))
}

/// A nats-server with both kinds announced (BTC at `btc`), and the publisher.
async fn bus(btc: f64) -> Result<(NatsServer, Publisher)> {
    let server = timeout(WAIT, NatsServer::start()).await??;
    let publisher = Publisher::connect(&server).await?;
    publisher.publish(&ranking()).await?;
    publisher.publish(&prices(btc)).await?;
    Ok((server, publisher))
}

fn times(page: &CandlesResponse) -> Vec<i64> {
    page.data.iter().map(|c| c.time).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_return_every_row_once_with_etags_and_one_read() -> Result<()> {
    let (_dir, store, url) = sqlite().await?;
    // 250 minutes of BTC, one sample each.
    let samples: Vec<Sample> = (0..250)
        .map(|i| sample("BTC", DAY0 + i * MIN + 5, 1.0 + i as f64))
        .collect();
    store.apply(Batch::from_samples(&samples)).await?;
    let (server, _publisher) = bus(100.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    node.top().await?;

    let (from, to) = (DAY0 + 10 * MIN, DAY0 + 200 * MIN);
    for format in ["json", "csv"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!(
                "/v1/coins/btc/candles?interval=1m&from={from}&to={to}&limit=7&format={format}"
            );
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let a = until("the database to open", || async {
                let a = node.get(&path).await?;
                Ok((a.code() != "history_unavailable").then_some(a))
            })
            .await?;
            ensure!(a.status == 200, "{path}: {} {}", a.status, a.code());
            pages += 1;
            let next = if format == "json" {
                let page: CandlesResponse = a.json()?;
                assert_eq!(
                    (page.meta.symbol.as_str(), page.meta.interval.as_str()),
                    ("BTC", "1m")
                );
                for c in &page.data {
                    let i = (c.time - DAY0) / MIN;
                    assert_eq!(
                        (c.open, c.close, c.volume),
                        (1.0 + i as f64, 1.0 + i as f64, None)
                    );
                }
                seen.extend(times(&page));
                page.meta.next_cursor
            } else {
                let text = String::from_utf8(a.body.clone())?;
                let mut lines = text.lines();
                assert_eq!(lines.next(), Some("Time,Open,High,Low,Close,Volume"));
                seen.extend(lines.map(|l| l.split(',').next().unwrap().parse::<i64>().unwrap()));
                a.header("x-topcoins-next-cursor").map(str::to_owned)
            };
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<i64> = (10..200).map(|i| DAY0 + i * MIN).collect();
        assert_eq!(seen, expected, "{format}: every row once, ascending");
        assert_eq!(pages, 190 / 7 + 1, "{format}");
    }

    // ETag and 304; the same past range again is not read from the database again.
    let path = format!(
        "/v1/coins/BTC/candles?interval=5m&from={DAY0}&to={}",
        DAY0 + 4 * HOUR
    );
    let first = node.get(&path).await?;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").context("an etag")?.to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    assert_eq!(first.header("cache-control"), Some("max-age=600"));
    let page: CandlesResponse = first.json()?;
    assert_eq!(page.data.len(), 48);
    let reads = node.reads();
    let again = node.get(&path).await?;
    assert_eq!(
        (again.status, again.body.as_slice()),
        (200, first.body.as_slice())
    );
    let not_modified = node.get_with(&path, &[("If-None-Match", &etag)]).await?;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert!(not_modified.body.is_empty());
    // Bounds that hold the same buckets are the same entry.
    let same = format!(
        "/v1/coins/btc/candles?interval=5m&from={}&to={}",
        DAY0 - 1,
        DAY0 + 4 * HOUR - 299_999
    );
    assert_eq!(node.get(&same).await?.body, first.body);
    assert_eq!(node.reads(), reads, "served from the node's cache");
    let other = node
        .get_with(&path.replace("5m", "15m"), &[("If-None-Match", &etag)])
        .await?;
    assert_eq!(other.status, 200);
    assert_eq!(node.reads(), reads + 1.0);
    assert!(node.metric("topcoins_api_cache_hits_total", &[("cache", "candles")]) >= 3.0);

    // CSV by Accept, as for GET /.
    let csv = node.get_with(&path, &[("Accept", "text/csv")]).await?;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_ne!(csv.header("etag"), Some(etag.as_str()));

    // Every 200 counted under the route, not the path.
    assert!(
        node.metric(
            "topcoins_http_requests_total",
            &[("route", CANDLES), ("status", "200")]
        ) >= 10.0
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_json_4xx_and_counted() -> Result<()> {
    let (_dir, store, url) = sqlite().await?;
    store
        .apply(Batch::from_samples(&[sample("DOGE", DAY0, 0.1)]))
        .await?;
    let (server, _publisher) = bus(100.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    node.top().await?;
    until("the database to open", || async {
        let a = node.get("/v1/coins/BTC/candles?interval=1h").await?;
        Ok((a.status == 200).then_some(()))
    })
    .await?;
    let cases = [
        ("/v1/coins/BTC/candles", 400, "missing_parameter"),
        ("/v1/coins/BTC/candles?interval=2h", 400, "invalid_interval"),
        (
            "/v1/coins/BTC/candles?interval=1h&from=10&to=5",
            400,
            "invalid_range",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&from=soon",
            400,
            "invalid_time",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&to=2025-02-30T00:00:00Z",
            400,
            "invalid_time",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&limit=0",
            400,
            "invalid_limit",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&limit=2001",
            400,
            "invalid_limit",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&cursor=x1",
            400,
            "invalid_cursor",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&format=xml",
            400,
            "invalid_format",
        ),
        (
            "/v1/coins/BTC/candles?interval=1h&limit=1&limit=2",
            400,
            "duplicate_parameter",
        ),
        ("/v1/coins/NOPE/candles?interval=1h", 404, "unknown_symbol"),
        (
            "/v1/coins/%FF%FE/candles?interval=1h",
            404,
            "unknown_symbol",
        ),
        ("/v1/coins/NOPE", 404, "unknown_symbol"),
    ];
    for (path, status, code) in cases {
        let a = node.get(path).await?;
        assert_eq!((a.status, a.code().as_str()), (status, code), "{path}");
        assert!(
            a.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}"
        );
    }
    assert_eq!(
        node.metric(
            "topcoins_http_requests_total",
            &[("route", CANDLES), ("status", "400")]
        ),
        10.0
    );
    assert_eq!(
        node.metric(
            "topcoins_http_requests_total",
            &[("route", CANDLES), ("status", "404")]
        ),
        2.0
    );
    // Not in the top list but recorded: known, an empty range is a 200.
    let a = node
        .get(&format!(
            "/v1/coins/doge/candles?interval=1m&from={}&to={}",
            DAY0 + HOUR,
            DAY0 + 2 * HOUR
        ))
        .await?;
    assert_eq!(a.status, 200, "{}", a.code());
    assert!(a.json::<CandlesResponse>()?.data.is_empty());
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_bucket_shows_the_latest_notice_before_the_database_has_it() -> Result<()> {
    let (_dir, store, url) = sqlite().await?;
    // What the recorder wrote so far: BTC at 100 up to a few seconds ago.
    let now = now_ms();
    let samples: Vec<Sample> = (0..30)
        .map(|i| sample("BTC", now - 2_000 - i * 20_000, 100.0))
        .collect();
    store.apply(Batch::from_samples(&samples)).await?;
    let (server, publisher) = bus(123.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    let notice_ms = |top: &TopResponse| -> Result<i64> {
        let t = time::OffsetDateTime::parse(
            &top.meta.prices_as_of,
            &time::format_description::well_known::Rfc3339,
        )?;
        Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let top = node.top().await?;
    let last = |interval: &'static str| {
        let node = &node;
        async move {
            until("candles", || async {
                let a = node
                    .get(&format!("/v1/coins/BTC/candles?interval={interval}"))
                    .await?;
                if a.status != 200 {
                    return Ok(None);
                }
                assert_eq!(a.header("cache-control"), Some("no-cache"));
                let page: CandlesResponse = a.json()?;
                Ok(page.data.last().cloned())
            })
            .await
        }
    };
    let as_of = notice_ms(&top)?;
    for (interval, len) in [("1m", MIN), ("1h", HOUR)] {
        let candle = last(interval).await?;
        assert_eq!(candle.time, as_of - as_of.rem_euclid(len), "{interval}");
        assert_eq!((candle.close, candle.high), (123.0, 123.0), "{interval}");
        if interval == "1h" && (now - 2_000) - (now - 2_000).rem_euclid(HOUR) == candle.time {
            // The hour the record has: merged with it.
            assert_eq!((candle.open, candle.low), (100.0, 100.0));
        }
    }
    // A newer notice: the next request shows it, cached or not.
    publisher.publish(&prices(130.5)).await?;
    let top = until("the newer notice", || async {
        let top = node.top().await?;
        Ok((top.data[0].price_usd == Some(130.5)).then_some(top))
    })
    .await?;
    let candle = last("1m").await?;
    assert_eq!(candle.close, 130.5);
    assert_eq!(
        candle.time,
        notice_ms(&top)? - notice_ms(&top)?.rem_euclid(MIN)
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_24h_is_against_the_recorded_price_of_a_day_ago() -> Result<()> {
    let (_dir, store, url) = sqlite().await?;
    let now = now_ms();
    let day = 24 * HOUR;
    store
        .apply(Batch::from_samples(&[
            sample("BTC", now - day - HOUR, 80.0),
            // The last price at or before 24 h ago: the reference.
            sample("BTC", now - day - 10_000, 100.0),
            sample("BTC", now - day + HOUR, 999.0),
        ]))
        .await?;
    let (server, _publisher) = bus(110.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    let top = until("the 24 h change", || async {
        let top = node.top().await?;
        Ok(top.data[0].change_24h_pct.is_some().then_some(top))
    })
    .await?;
    let expected = (110.0 - 100.0) / 100.0 * 100.0;
    assert_eq!(top.data[0].symbol, "BTC");
    assert_eq!(top.data[0].change_24h_pct, Some(expected));
    assert_eq!(top.data[1].change_24h_pct, None, "ETH has no history");
    let raw = node.get("/").await?;
    assert!(String::from_utf8(raw.body)?.contains("\"change_24h_pct\":null"));
    // CSV keeps its columns.
    let csv = node.get("/?format=csv").await?;
    assert!(String::from_utf8(csv.body)?.starts_with("Rank,Symbol,Price USD\n1,BTC,110.0\n"));

    let a = node.get("/v1/coins/btc").await?;
    assert_eq!(a.status, 200);
    let coin: CoinResponse = a.json()?;
    assert_eq!(
        (
            coin.symbol.as_str(),
            coin.rank,
            coin.price_usd,
            coin.change_24h_pct
        ),
        ("BTC", 1, Some(110.0), Some(expected))
    );
    assert_eq!(coin.market_cap_usd, Some(1e12));
    assert_eq!(coin.volume_24h_usd, Some(5e9));
    assert_eq!(coin.as_of, top.meta.prices_as_of);
    let etag = a.header("etag").context("etag")?.to_owned();
    let b = node
        .get_with("/v1/coins/BTC", &[("If-None-Match", &etag)])
        .await?;
    assert_eq!(b.status, 304);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_down_is_a_503_for_history_only() -> Result<()> {
    let mut pg = timeout(WAIT, Postgres::start()).await??;
    let url = pg.url();
    let store = Store::open(&url.parse::<DatabaseUrl>()?).await?;
    store.migrate().await?;
    let samples: Vec<Sample> = (0..48)
        .map(|i| sample("BTC", DAY0 + i * 30 * MIN, 1.0 + i as f64))
        .collect();
    store.apply(Batch::from_samples(&samples)).await?;
    drop(store);
    let (server, _publisher) = bus(100.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    node.top().await?;
    let past = format!(
        "/v1/coins/BTC/candles?interval=1h&from={DAY0}&to={}",
        DAY0 + 24 * HOUR
    );
    let first = until("the database to open", || async {
        let a = node.get(&past).await?;
        Ok((a.status == 200).then_some(a))
    })
    .await?;
    assert_eq!(first.json::<CandlesResponse>()?.data.len(), 24);

    pg.stop().await;
    let reads = node.reads();
    // The past range is served from the node's cache.
    let cached = node.get(&past).await?;
    assert_eq!(
        (cached.status, cached.body.as_slice()),
        (200, first.body.as_slice())
    );
    assert_eq!(node.reads(), reads);
    // Anything that needs the database is a 503, in the error shape.
    for path in [
        past.replace("1h", "4h"),
        "/v1/coins/BTC/candles?interval=1m".to_owned(),
    ] {
        let a = node.get(&path).await?;
        assert_eq!(
            (a.status, a.code().as_str()),
            (503, "history_unavailable"),
            "{path}"
        );
        assert_eq!(a.header("retry-after"), Some("1"));
    }
    assert!(
        node.metric(
            "topcoins_api_history_errors_total",
            &[("reason", "unavailable")]
        ) >= 2.0
    );
    // What is served from memory goes on.
    assert_eq!(node.get("/").await?.status, 200);
    assert_eq!(node.get("/v1/coins/BTC").await?.status, 200);
    assert_eq!(node.get("/readyz").await?.status, 200);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_that_cannot_be_opened_is_a_503_until_it_can() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The directory does not exist yet: SQLite cannot create the file.
    let missing = dir.path().join("later");
    let url = format!("sqlite://{}", missing.join("history.db").display());
    let (server, _publisher) = bus(100.0).await?;
    let node = Node::start(server.url(), Some(&url)).await?;
    let without = Node::start(server.url(), None).await?;
    node.top().await?;
    without.top().await?;
    let path = "/v1/coins/BTC/candles?interval=1h";
    for n in [&node, &without] {
        let a = n.get(path).await?;
        assert_eq!((a.status, a.code().as_str()), (503, "history_unavailable"));
        assert_eq!(n.get("/").await?.status, 200);
        let top: TopResponse = n.get("/").await?.json()?;
        assert_eq!(top.data[0].change_24h_pct, None);
    }
    // Once it can be opened, the node does so by itself.
    std::fs::create_dir(&missing)?;
    let a = until("the database to open", || async {
        let a = node.get(path).await?;
        Ok((a.status == 200).then_some(a))
    })
    .await?;
    // Opened empty: BTC is in the top list, the open bucket shows its price.
    let page: CandlesResponse = a.json()?;
    assert_eq!(page.data.last().map(|c| c.close), Some(100.0));
    node.stop().await?;
    without.stop().await
}
