//! The snapshot store and notices against a real nats-server started for this test.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::time::timeout;
use topcoins_bus::{LocalServer, NatsConfig, SnapshotStore, StoreErrorKind, connect, subjects};
use topcoins_schemas::{HashNotice, Kind, SnapshotHash};

const T: Duration = Duration::from_secs(10);

async fn setup() -> Result<(LocalServer, async_nats::Client, SnapshotStore)> {
    let server = LocalServer::start().await?;
    let config = NatsConfig {
        url: server.url().to_owned(),
        name: "test".into(),
        ..Default::default()
    };
    let (client, link) = timeout(T, connect(&config)).await??;
    client.flush().await?;
    assert!(link.is_up());
    let store = timeout(T, SnapshotStore::open(client.clone())).await??;
    Ok((server, client, store))
}

#[tokio::test]
async fn put_fetch_verify_and_latest_notice() -> Result<()> {
    let (_server, client, store) = setup().await?;
    let bytes = vec![7u8; 300_000];
    let hash = SnapshotHash::of(&bytes);
    timeout(T, store.put(hash, &bytes)).await??;
    timeout(T, store.put(hash, &bytes)).await??; // idempotent
    assert_eq!(&timeout(T, store.fetch(hash)).await??[..], &bytes[..]);

    let missing = SnapshotHash::of(b"nothing");
    let err = timeout(T, store.fetch(missing)).await?.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound);

    // Bytes stored under a name that is not their hash are refused on fetch.
    let js = async_nats::jetstream::new(client.clone());
    let liar = SnapshotHash::of(b"the real bytes");
    js.publish(subjects::snapshot_subject(&liar, 0), "forged bytes".into())
        .await?
        .await?;
    let err = timeout(T, store.fetch(liar)).await?.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::HashMismatch);

    // A snapshot larger than a message travels in chunks and comes back whole.
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
    let big_hash = SnapshotHash::of(&big);
    timeout(T, store.put(big_hash, &big)).await??;
    assert_eq!(&timeout(T, store.fetch(big_hash)).await??[..], &big[..]);

    assert_eq!(timeout(T, store.latest(Kind::Prices)).await??, None);
    let mut live = client.subscribe(subjects::PRICES_HASH).await?;
    client.flush().await?;
    let notice = HashNotice {
        hash,
        as_of: OffsetDateTime::now_utc(),
        count: 1,
        source: "test".into(),
    };
    let trace = topcoins_bus::TraceContext::new();
    timeout(T, store.announce(Kind::Prices, &notice, &trace)).await??;
    let got = timeout(T, live.next()).await?.expect("notice delivered");
    assert_eq!(HashNotice::decode(&got.payload)?, notice);
    // The trace context travels in the notice's headers.
    let header = got
        .headers
        .as_ref()
        .and_then(|h| h.get(topcoins_bus::trace::TRACEPARENT))
        .expect("traceparent header");
    assert_eq!(
        topcoins_bus::TraceContext::parse(header.as_str()),
        Some(trace)
    );
    assert_eq!(timeout(T, store.latest(Kind::Prices)).await??, Some(notice));
    assert_eq!(timeout(T, store.latest(Kind::Ranking)).await??, None);
    Ok(())
}

#[tokio::test]
async fn prune_keeps_current_and_recent() -> Result<()> {
    let (_server, _client, store) = setup().await?;
    let a = b"a".to_vec();
    let b = b"b".to_vec();
    let (ha, hb) = (SnapshotHash::of(&a), SnapshotHash::of(&b));
    store.put(ha, &a).await?;
    store.put(hb, &b).await?;
    assert_eq!(store.prune(&[], Duration::from_secs(3600)).await?, 0);
    assert_eq!(store.prune(&[hb], Duration::ZERO).await?, 1);
    assert!(store.fetch(ha).await.is_err());
    assert!(store.fetch(hb).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn store_survives_a_server_restart() -> Result<()> {
    let (mut server, _client, store) = setup().await?;
    let bytes = b"durable".to_vec();
    let hash = SnapshotHash::of(&bytes);
    store.put(hash, &bytes).await?;
    server.restart().await?;
    // The same client reconnects by itself; the data is on disk.
    let got = timeout(T, async {
        loop {
            match store.fetch(hash).await {
                Ok(b) => break b,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await?;
    assert_eq!(&got[..], &bytes[..]);
    Ok(())
}
