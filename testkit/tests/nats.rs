//! The nats-server harness: a server on a port of its choosing, which a test can stop, kill
//! and bring back on the same port.

use std::time::Duration;

use anyhow::{Result, ensure};
use tokio::io::AsyncBufReadExt;
use tokio::time::timeout;
use topcoins_testkit::NatsServer;

const T: Duration = Duration::from_secs(30);

/// Whether a NATS server greets a client at `port` (its first line is `INFO {…}`).
async fn greets(port: u16) -> bool {
    let talk = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await?;
        ensure!(line.starts_with("INFO {"), "greeting {line:?}");
        Ok(())
    };
    matches!(timeout(T, talk).await, Ok(Ok(())))
}

#[tokio::test]
async fn stop_kill_and_restart_on_the_same_port() -> Result<()> {
    let mut server = timeout(T, NatsServer::start()).await??;
    let port = server.port();
    assert_ne!(port, 0);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    assert!(greets(port).await);

    timeout(T, server.stop()).await?;
    assert!(!server.is_running());
    assert!(!greets(port).await, "a stopped server does not answer");
    timeout(T, server.restart()).await??;
    assert_eq!(server.port(), port, "back on the same port");
    assert!(greets(port).await);

    timeout(T, server.kill()).await?;
    assert!(!greets(port).await, "a killed server does not answer");
    timeout(T, server.restart()).await??;
    assert!(greets(port).await);
    assert!(
        server.store_dir().join("jetstream").is_dir(),
        "JetStream on"
    );
    drop(server);
    // Drop sends the kill and does not wait for it: the port closes a moment later.
    timeout(T, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_cluster_of_three_routed_to_each_other() -> Result<()> {
    let servers = timeout(T, topcoins_testkit::nats::cluster(3, &[])).await??;
    assert_eq!(servers.len(), 3);
    let mut ports: Vec<u16> = servers.iter().map(NatsServer::port).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for server in &servers {
        assert!(greets(server.port()).await);
        assert!(server.cluster_url().is_some(), "{}", server.log());
    }
    Ok(())
}
