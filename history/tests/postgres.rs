//! The behavioural suite on a real PostgreSQL, started here in a temporary directory on a
//! free port and stopped afterwards.
//!
//! The harness is a stopgap until the workspace's `testkit` crate lands: Debian's binaries
//! (`pg_config --bindir`), `initdb` and `pg_ctl` run as the `postgres` user when we are root
//! (postgres refuses to run as root), `fsync` off. One cluster is shared by the tests that
//! run at once, each in a database of its own. Without PostgreSQL installed the tests say so
//! and pass without checking anything.

mod suite;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use topcoins_history::{CandleStore, DatabaseUrl, PostgresStore};

struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("initdb").exists().then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `bin/name args…`, as the postgres user when we are root; its chatter on stdout dropped.
fn run(bin: &Path, name: &str, args: &[&str]) {
    let program = bin.join(name);
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let status = command.args(args).stdout(Stdio::null()).status();
    assert!(status.unwrap().success(), "{name} {args:?} failed");
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let Some(bin) = bindir() else {
            eprintln!("postgresql is not installed (no pg_config): postgres tests skipped");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let data_str = data.to_str().unwrap();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                data_str,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-F -p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        let log = dir.path().join("log");
        run(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data_str,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Some(Cluster {
            _dir: dir,
            data,
            bin,
            port,
        })
    }

    /// The running cluster, started if no test holds one.
    fn shared() -> Option<Arc<Cluster>> {
        static CURRENT: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        let mut current = CURRENT.lock().unwrap();
        if let Some(cluster) = current.upgrade() {
            return Some(cluster);
        }
        let cluster = Arc::new(Cluster::start()?);
        *current = Arc::downgrade(&cluster);
        Some(cluster)
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

/// A fresh database on the shared cluster, migrated.
async fn open() -> Option<(Arc<Cluster>, PostgresStore)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = tokio::task::spawn_blocking(Cluster::shared)
        .await
        .unwrap()?;
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
    Some((cluster, store))
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
    assert_eq!(versions, [(1, "candles".to_owned())]);
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

#[tokio::test]
async fn a_database_that_is_not_there_is_unavailable() {
    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let DatabaseUrl::Postgres(url) = format!("postgres://u:secret@127.0.0.1:{port}/x")
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
