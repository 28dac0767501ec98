//! What the backfill's tests share: the two backends (SQLite in a file that can be opened
//! again, PostgreSQL from the testkit harness), a scripted CryptoCompare that counts what it
//! is asked, and a backfill wired to a URL.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use prometheus::Registry;
use topcoins_backfill::{Backfill, BackfillMetrics, HistoClient, Limits, Pacing};
use topcoins_history::{
    Candle, CandleStore, DatabaseUrl, Interval, PostgresStore, Range, SqliteStore,
};
use topcoins_testkit::Postgres;
use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::{Upstream, UpstreamMetrics};

/// Every await of a test is done within this.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Where a store lives, so that a "restart" can open it again.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(Postgres, String),
}

impl Db {
    pub async fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A private PostgreSQL (Debian's binaries, as the `postgres` user), one database.
    pub async fn postgres() -> Db {
        let pg = Postgres::start()
            .await
            .expect("a PostgreSQL server for the tests (scripts/test installs `postgresql`)");
        let url = pg.url();
        Db::Postgres(pg, url)
    }

    fn path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("history.db")
    }

    /// The store, opened (again) and migrated.
    pub async fn open(&self) -> AnyStore {
        match self {
            Db::Sqlite(dir) => {
                let s = SqliteStore::open(&Self::path(dir)).await.unwrap();
                s.migrate().await.unwrap();
                AnyStore::Sqlite(s)
            }
            Db::Postgres(_, url) => {
                let DatabaseUrl::Postgres(url) = url.parse().unwrap() else {
                    unreachable!()
                };
                let s = PostgresStore::connect(&url).unwrap();
                s.migrate().await.unwrap();
                AnyStore::Postgres(s)
            }
        }
    }
}

/// `topcoins_history::Store` opened by hand (its constructor takes a URL; a test wants the
/// harness's).
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    pub fn into_store(self) -> topcoins_history::Store {
        match self {
            AnyStore::Sqlite(s) => topcoins_history::Store::Sqlite(s),
            AnyStore::Postgres(s) => topcoins_history::Store::Postgres(s),
        }
    }
}

/// Every priced candle of a coin and interval.
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
                limit: 5000,
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

/// A request's path and query.
pub type Asked = (String, HashMap<String, String>);

/// A CryptoCompare that answers each path with its scripted bodies in turn (the last one
/// again and again), and remembers every query.
#[derive(Clone, Default)]
pub struct Fake {
    bodies: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
    hits: Arc<AtomicUsize>,
    pub queries: Arc<Mutex<Vec<Asked>>>,
}

async fn answer(
    State(fake): State<Fake>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    let path = uri.path().to_owned();
    fake.queries.lock().unwrap().push((path.clone(), q));
    let mut bodies = fake.bodies.lock().unwrap();
    let body = match bodies.get_mut(&path) {
        Some(list) if list.len() > 1 => list.remove(0),
        Some(list) if !list.is_empty() => list[0].clone(),
        _ => br#"{"Response":"Error","Message":"Path does not exist","Type":0,"Data":{}}"#.to_vec(),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

impl Fake {
    pub fn script(&self, path: &str, bodies: Vec<Vec<u8>>) {
        self.bodies.lock().unwrap().insert(path.to_owned(), bodies);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Serves until the test ends; returns the base URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

/// Calls without waits worth the name, and no retries inside the HTTP client (the tests count
/// calls).
pub fn fast_pacing() -> Pacing {
    Pacing {
        spacing: Duration::from_millis(1),
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        max_rate_limited: 3,
    }
}

pub fn backfill(url: &str, coins: usize, limits: Limits) -> (Backfill, Registry) {
    let registry = Registry::new();
    let upstream = Upstream::new(
        "cryptocompare",
        HttpConfig {
            retries: 0,
            timeout: Duration::from_secs(10),
            ..HttpConfig::default()
        },
        UpstreamMetrics::register(&registry).unwrap(),
    );
    let client = HistoClient::new(upstream, url, Some("test-key".into()));
    let metrics = BackfillMetrics::register(&registry).unwrap();
    (
        Backfill::new(client, coins, fast_pacing(), metrics).with_limits(limits),
        registry,
    )
}

/// The sum of a metric's series in `registry` whose labels include `labels`, 0 when absent.
pub fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = topcoins_runtime::metrics::render(registry);
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let metric = series.split('{').next().unwrap_or_default();
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Never completes: a run that is not to be shut down.
pub async fn never() {
    std::future::pending::<()>().await
}
