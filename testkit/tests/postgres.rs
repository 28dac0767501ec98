//! The PostgreSQL harness: a private cluster answers on its loopback port and on its unix
//! socket, and is gone once dropped.

use std::time::Duration;

use anyhow::Result;
use tokio::time::timeout;
use tokio_postgres::NoTls;
use topcoins_testkit::Postgres;

const T: Duration = Duration::from_secs(30);

async fn select_one(url: &str) -> Result<i32> {
    let (client, connection) = timeout(T, tokio_postgres::connect(url, NoTls)).await??;
    let connection = tokio::spawn(connection);
    let row = timeout(T, client.query_one("SELECT 1", &[])).await??;
    drop(client);
    timeout(T, connection).await???;
    Ok(row.get(0))
}

#[tokio::test]
async fn connects_on_the_port_and_the_socket_and_stops_on_drop() -> Result<()> {
    let pg = timeout(T * 2, Postgres::start()).await??;
    assert!(pg.url().starts_with("postgres://"), "{}", pg.url());
    assert_eq!(select_one(&pg.url()).await?, 1);
    assert_eq!(select_one(&pg.socket_url()).await?, 1);

    let url = pg.url();
    let socket = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port()));
    assert!(socket.exists(), "{} exists while running", socket.display());
    drop(pg);
    assert!(!socket.exists(), "the socket went with the cluster");
    assert!(
        timeout(T, tokio_postgres::connect(&url, NoTls))
            .await?
            .is_err(),
        "nothing answers on {url} after drop"
    );
    Ok(())
}

#[tokio::test]
async fn stop_ends_the_server() -> Result<()> {
    let mut pg = timeout(T * 2, Postgres::start()).await??;
    assert_eq!(select_one(&pg.url()).await?, 1);
    timeout(T, pg.stop()).await?;
    assert!(
        timeout(T, tokio_postgres::connect(&pg.url(), NoTls))
            .await?
            .is_err()
    );
    Ok(())
}
