//! The behavioural suite on a real PostgreSQL, started by the workspace's test harness
//! (`topcoins_testkit::Postgres`: Debian's binaries as the `postgres` user, a temporary
//! directory, a free port, `fsync` off) and stopped when the last test using it is done. One
//! cluster is shared by the tests that run at once, each in a database of its own. Without
//! PostgreSQL the tests fail and say how to get it (`scripts/test` installs it).

mod suite;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use topcoins_history::{CandleStore, DatabaseUrl, PostgresStore};
use topcoins_testkit::Postgres;

struct Cluster(Postgres);

impl Cluster {
    /// The running cluster, started if no test holds one.
    async fn shared() -> Option<Arc<Cluster>> {
        static CURRENT: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        if let Some(cluster) = CURRENT.lock().unwrap().upgrade() {
            return Some(cluster);
        }
        let started = Postgres::start()
            .await
            .expect("a PostgreSQL server for the tests (scripts/test installs `postgresql`)");
        let cluster = Arc::new(Cluster(started));
        let mut current = CURRENT.lock().unwrap();
        // Another test may have started one meanwhile: use it, and let ours go.
        if let Some(existing) = current.upgrade() {
            return Some(existing);
        }
        *current = Arc::downgrade(&cluster);
        Some(cluster)
    }

    /// The URL of database `db` on the cluster.
    fn url(&self, db: &str) -> String {
        let url = self.0.url();
        let base = url.strip_suffix("/postgres").unwrap_or(&url);
        format!("{base}/{db}")
    }
}

/// A fresh database on the shared cluster, migrated.
async fn open() -> Option<(Arc<Cluster>, PostgresStore)> {
    open_named()
        .await
        .map(|(cluster, store, _)| (cluster, store))
}

/// [`open`], and the database's name.
async fn open_named() -> Option<(Arc<Cluster>, PostgresStore, String)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = Cluster::shared().await?;
    let db = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let (client, connection) =
        tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let DatabaseUrl::Postgres(url) = cluster.url(&db).parse().unwrap() else {
        unreachable!()
    };
    let store = PostgresStore::connect(&url).unwrap();
    store.migrate().await.unwrap();
    Some((cluster, store, db))
}

suite::behaviours!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_and_a_newer_schema_is_refused() {
    let Some((cluster, store)) = open().await else {
        return;
    };
    // Two stores migrating the same database at once: the advisory lock serialises them.
    let db = "migrate_twice";
    let (client, connection) =
        tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let DatabaseUrl::Postgres(url) = cluster.url(db).parse().unwrap() else {
        unreachable!()
    };
    let (a, b) = (
        PostgresStore::connect(&url).unwrap(),
        PostgresStore::connect(&url).unwrap(),
    );
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let (client, connection) = tokio_postgres::connect(&cluster.url(db), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        versions,
        [
            (1, "candles".to_owned()),
            (2, "backfills".to_owned()),
            (3, "rollup".to_owned()),
            (4, "minutes".to_owned()),
            (5, "metrics_accounts".to_owned()),
            (6, "alerts".to_owned())
        ]
    );
    client
        .batch_execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
        .await
        .unwrap();
    assert!(matches!(
        a.migrate().await,
        Err(topcoins_history::Error::SchemaTooNew { found: 99, .. })
    ));
    drop(store);
}

/// A snapshot opening a minute is copied into `minutes`. When a row of that minute appears
/// between the store's look and its copy (another writer's, committed while the copy waits on
/// its key), the copy is rolled back and the merge writes the snapshot: the outcome is what
/// the merge makes of the row being there first. (Without the fallback the apply fails on the
/// key.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_written_meanwhile_goes_through_the_merge() {
    let Some((cluster, raced, raced_db)) = open_named().await else {
        return;
    };
    let Some((_, calm, calm_db)) = open_named().await else {
        return;
    };
    let t = suite::DAY0 + 7 * 60_000;
    // A backfilled minute of BTC, as another writer puts it there.
    let row = format!(
        "INSERT INTO minutes (symbol, span, bucket_ms, source, open_ms, open, high, low, \
         close_ms, close, volume_from, volume_to) \
         VALUES ('BTC', '1m', {t}, 1, {t}, 90, 150, 80, {}, 95, 10, 20)",
        t + 59_999
    );
    let (p, as_of) = suite::prices(t + 30_000, &[("BTC", 100.0, Some(1e6)), ("ETH", 5.0, None)]);
    let batch = topcoins_history::Batch::from_prices(&p, as_of);
    let connect = |db: String| {
        let url = cluster.url(&db);
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        }
    };
    // The row first, then the snapshot: the merge.
    connect(calm_db).await.batch_execute(&row).await.unwrap();
    calm.apply(batch.clone()).await.unwrap();
    // The row inserted but not committed: the store does not see it and copies; its copy waits
    // on BTC's key until the other writer commits, then fails on it.
    let mut other = connect(raced_db).await;
    let tx = other.transaction().await.unwrap();
    tx.batch_execute(&row).await.unwrap();
    let raced = Arc::new(raced);
    let applying = tokio::spawn({
        let raced = raced.clone();
        let batch = batch.clone();
        async move { raced.apply(batch).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    applying.await.unwrap().unwrap();
    let symbols = ["BTC", "ETH"];
    let merged = suite::dump(&calm, &symbols).await;
    assert!(merged.iter().any(|c| c.symbol == "BTC"));
    assert_eq!(suite::dump(&*raced, &symbols).await, merged);
}

#[tokio::test]
async fn a_database_that_is_not_there_is_unavailable() {
    // Nothing listens on port 1 (a privileged port no test server takes).
    let DatabaseUrl::Postgres(url) = "postgres://u:secret@127.0.0.1:1/x"
        .to_owned()
        .parse()
        .unwrap()
    else {
        unreachable!()
    };
    let store = PostgresStore::connect(&url).unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(err, topcoins_history::Error::Unavailable(_)),
        "{err}"
    );
    assert!(!err.to_string().contains("secret"));
}
