//! The snapshot store and notices against a real nats-server started for this test.

use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;
use tokio::time::timeout;
use topcoins_bus::{
    Latest, Link, NatsConfig, SnapshotStore, StoreErrorKind, connect, subjects, subscribe_notices,
    subscribe_snapshots,
};
use topcoins_schemas::{HashNotice, Kind, SnapshotHash};
use topcoins_testkit::NatsServer;

const T: Duration = Duration::from_secs(10);

async fn setup() -> Result<(NatsServer, async_nats::Client, SnapshotStore)> {
    let (server, client, store, _) = setup_linked().await?;
    Ok((server, client, store))
}

/// [`setup`], with the client's [`Link`] (to wait for its reconnects).
async fn setup_linked() -> Result<(NatsServer, async_nats::Client, SnapshotStore, Link)> {
    let server = timeout(T, NatsServer::start()).await??;
    let config = NatsConfig {
        url: server.url().to_owned(),
        name: "test".into(),
        ..Default::default()
    };
    let (client, link) = timeout(T, connect(&config)).await??;
    timeout(T, client.flush()).await??;
    assert!(link.is_up());
    let store = timeout(T, SnapshotStore::open(client.clone())).await??;
    Ok((server, client, store, link))
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
    let liar = SnapshotHash::of(b"the real bytes");
    timeout(T, store.put_forged(liar, "forged bytes".into())).await??;
    let err = timeout(T, store.fetch(liar)).await?.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::HashMismatch);

    // A snapshot larger than a message travels in chunks and comes back whole.
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
    let big_hash = SnapshotHash::of(&big);
    timeout(T, store.put(big_hash, &big)).await??;
    assert_eq!(&timeout(T, store.fetch(big_hash)).await??[..], &big[..]);

    assert_eq!(timeout(T, store.latest(Kind::PRICES)).await??, None);
    let mut live = timeout(T, subscribe_notices(&client, subjects::KINDS)).await??;
    timeout(T, client.flush()).await??;
    let notice = HashNotice {
        hash,
        as_of: OffsetDateTime::now_utc(),
        count: 1,
        source: "test".into(),
        follows: Some(0),
    };
    let trace = topcoins_bus::TraceContext::new();
    let sequence = timeout(T, store.announce(Kind::PRICES, &notice, &trace)).await??;
    let got = timeout(T, live.next()).await?.expect("notice delivered")?;
    assert_eq!(got.kind, Kind::PRICES);
    assert_eq!(got.notice, notice);
    // The trace context travels with the notice.
    assert_eq!(got.trace, Some(trace));
    assert_eq!(
        timeout(T, store.latest(Kind::PRICES)).await??,
        Some(Latest { notice, sequence })
    );
    assert_eq!(timeout(T, store.latest(Kind::RANKING)).await??, None);
    Ok(())
}

/// Two publishers that both believe they follow the same notice: only the first announces.
/// This is what stops an actor whose lease lapsed from announcing over its successor.
#[tokio::test]
async fn announcing_is_fenced_on_the_notice_it_follows() -> Result<()> {
    let (_server, _client, store) = setup().await?;
    let notice = |text: &[u8], follows| HashNotice {
        hash: SnapshotHash::of(text),
        as_of: OffsetDateTime::now_utc(),
        count: 1,
        source: "test".into(),
        follows,
    };
    let trace = topcoins_bus::TraceContext::new();
    let first = timeout(
        T,
        store.announce(Kind::RANKING, &notice(b"a", Some(0)), &trace),
    )
    .await??;
    // A second "first" notice: the kind has one already.
    let err = timeout(
        T,
        store.announce(Kind::RANKING, &notice(b"b", Some(0)), &trace),
    )
    .await?
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Fenced);
    // The new leader follows `first` and announces; the old one, also following `first`, is refused.
    let second = timeout(
        T,
        store.announce(Kind::RANKING, &notice(b"c", Some(first)), &trace),
    )
    .await??;
    assert!(second > first);
    let err = timeout(
        T,
        store.announce(Kind::RANKING, &notice(b"d", Some(first)), &trace),
    )
    .await?
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Fenced);
    let latest = timeout(T, store.latest(Kind::RANKING))
        .await??
        .expect("a notice");
    assert_eq!(latest.notice.hash, SnapshotHash::of(b"c"));
    assert_eq!(latest.sequence, second);
    // Kinds are fenced separately.
    timeout(
        T,
        store.announce(Kind::PRICES, &notice(b"p", Some(0)), &trace),
    )
    .await??;
    Ok(())
}

/// A follower listening for pushed snapshots gets the bytes of each put whole, chunked or not.
#[tokio::test]
async fn stored_snapshots_are_pushed_whole() -> Result<()> {
    let (_server, client, store) = setup().await?;
    let mut pushed = timeout(T, subscribe_snapshots(&client)).await??;
    timeout(T, client.flush()).await??;
    let small = b"small".to_vec();
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 253) as u8).collect();
    for bytes in [&small, &big] {
        let hash = SnapshotHash::of(bytes);
        timeout(T, store.put(hash, bytes)).await??;
        let got = timeout(T, pushed.next()).await?.expect("pushed");
        assert_eq!(got.hash, hash);
        assert_eq!(got.kind, None);
        assert_eq!(&got.bytes[..], &bytes[..]);
    }
    // Stored with its kind, the kind travels along.
    let typed = b"typed".to_vec();
    let hash = SnapshotHash::of(&typed);
    timeout(T, store.put_kind(Kind::PRICES, hash, &typed)).await??;
    let got = timeout(T, pushed.next()).await?.expect("pushed");
    assert_eq!((got.hash, got.kind.as_deref()), (hash, Some("prices")));
    Ok(())
}

#[tokio::test]
async fn prune_keeps_current_and_recent() -> Result<()> {
    let (_server, _client, store) = setup().await?;
    let a = b"a".to_vec();
    let b = b"b".to_vec();
    let (ha, hb) = (SnapshotHash::of(&a), SnapshotHash::of(&b));
    timeout(T, store.put(ha, &a)).await??;
    timeout(T, store.put(hb, &b)).await??;
    assert_eq!(
        timeout(T, store.prune(&[], Duration::from_secs(3600))).await??,
        0
    );
    assert_eq!(timeout(T, store.prune(&[hb], Duration::ZERO)).await??, 1);
    assert!(timeout(T, store.fetch(ha)).await?.is_err());
    assert!(timeout(T, store.fetch(hb)).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn store_survives_a_server_restart() -> Result<()> {
    let (mut server, client, store, link) = setup_linked().await?;
    let bytes = b"durable".to_vec();
    let hash = SnapshotHash::of(&bytes);
    timeout(T, store.put(hash, &bytes)).await??;
    let mut connects = link.connects();
    connects.mark_unchanged();
    timeout(T, server.restart()).await??;
    // The same client reconnects by itself, and the data is on disk: once a connection is
    // back (the server restores its streams before it takes clients), the fetch answers.
    timeout(T, connects.changed()).await??;
    timeout(T, client.flush()).await??;
    let got = timeout(T, store.fetch(hash)).await??;
    assert_eq!(&got[..], &bytes[..]);
    Ok(())
}
