//! The behavioural suite on SQLite, and what only SQLite has (the file, WAL, its migrations).

mod suite;

use topcoins_history::{Batch, CandleStore, DatabaseUrl, Error, Interval, SqliteStore, Store};

async fn open() -> Option<(tempfile::TempDir, SqliteStore)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("history.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((dir, store))
}

suite::behaviours!(open);

#[tokio::test]
async fn the_file_is_wal_versioned_and_kept_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let url: DatabaseUrl = format!("sqlite://{}", path.display()).parse().unwrap();
    {
        let store = Store::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let (p, as_of) = suite::prices(suite::DAY0, &[("BTC", 1.0, None)]);
        store.apply(Batch::from_prices(&p, as_of)).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<(i64, String)> = conn
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
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
    let without_rowid: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'candles'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(without_rowid.contains("WITHOUT ROWID"));

    // A newer schema than this build knows is refused, not written to.
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(matches!(
        store.migrate().await,
        Err(Error::SchemaTooNew { found: 99, .. })
    ));
    assert_eq!(suite::all(&store, "BTC", Interval::D1).await.len(), 1);
}
