//! The notice follower against a real nats-server, driven by hand: snapshots put in the store
//! and announced as an actor would, one node started with `topcoins_api::run`, and what it
//! serves read over HTTP. No actors and no simulator.
//!
//! - warm-up: a node started after the notices were announced serves them at once;
//! - reconnect: a change announced while the node is cut off from NATS is served once it is
//!   back, without a further notice;
//! - hash mismatch: a notice naming bytes that are not its hash's is counted, and the node
//!   keeps serving the last good data (and takes the next good change).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use topcoins_api::ApiConfig;
use topcoins_bus::{SnapshotStore, TraceContext};
use topcoins_schemas::api::{Readiness, TopResponse};
use topcoins_schemas::{
    HashNotice, Kind, PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, Snapshot,
    SnapshotHash,
};
use topcoins_testkit::NatsServer;

use common::until;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// Prices of two coins, BTC at `btc`.
fn prices(btc: f64) -> PriceSnapshot {
    let coin = |id: &str, symbol: &str, price_usd| PricedCoin {
        id: id.into(),
        symbol: symbol.into(),
        name: symbol.into(),
        price_usd,
        market_cap_usd: None,
    };
    PriceSnapshot::new("test", vec![coin("1", "BTC", btc), coin("2", "ETH", 2.0)]).expect("valid")
}

/// BTC first, then ETH.
fn ranking() -> RankingSnapshot {
    let coin = |id: &str, symbol: &str| RankedCoin {
        id: id.into(),
        symbol: symbol.into(),
        name: symbol.into(),
        volume_24h_usd: None,
        price_usd: None,
    };
    RankingSnapshot::new("test", vec![coin("btc", "BTC"), coin("eth", "ETH")]).expect("valid")
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

    /// Stores `snapshot` and announces it as an actor does: fenced on the kind's latest notice.
    async fn publish<S: Snapshot>(&self, snapshot: &S) -> Result<SnapshotHash> {
        let (bytes, hash) = snapshot.encode();
        timeout(WAIT, self.store.put(hash, &bytes)).await??;
        self.announce(S::KIND, hash, snapshot.len()).await?;
        Ok(hash)
    }

    /// Announces `hash` as the kind's next snapshot, whatever is stored under it.
    async fn announce(&self, kind: Kind, hash: SnapshotHash, count: usize) -> Result<u64> {
        let latest = timeout(WAIT, self.store.latest(kind)).await??;
        let notice = HashNotice {
            hash,
            as_of: time::OffsetDateTime::now_utc(),
            count: count as u64,
            source: "test".into(),
            follows: Some(latest.map_or(0, |l| l.sequence)),
        };
        let trace = TraceContext::new();
        Ok(timeout(WAIT, self.store.announce(kind, &notice, &trace)).await??)
    }
}

/// An API node running in this process, read the way these tests look at it.
struct Node(common::Node);

impl Node {
    async fn start(nats_url: &str) -> Result<Self> {
        Ok(Self(
            common::Node::start(nats_url, ApiConfig::default()).await?,
        ))
    }

    async fn stop(self) -> Result<()> {
        self.0.stop().await
    }

    /// The sum of a counter's samples whose labels include `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0.metric(name, labels)
    }

    /// `GET path`: status, ETag and body.
    async fn get(&self, path: &str) -> Result<(u16, String, Vec<u8>)> {
        let answer = self.0.get(path).await?;
        let etag = answer.header("etag").unwrap_or_default().to_owned();
        Ok((answer.status, etag, answer.body))
    }

    /// What `GET /` serves, once it serves 200.
    async fn top(&self) -> Result<Option<(String, TopResponse)>> {
        let (status, etag, body) = self.get("/").await?;
        Ok((status == 200)
            .then(|| serde_json::from_slice(&body).map(|top| (etag, top)))
            .transpose()?)
    }

    async fn readiness(&self) -> Result<Option<Readiness>> {
        let (status, _, body) = self.get("/readyz").await?;
        Ok((status == 200)
            .then(|| serde_json::from_slice(&body))
            .transpose()?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_serves_the_latest_notices_at_once() -> Result<()> {
    let server = timeout(WAIT, NatsServer::start()).await??;
    let bus = Publisher::connect(&server).await?;
    // An older change first: the node must serve the latest notice, not any stored one.
    bus.publish(&prices(1.0)).await?;
    let prices_hash = bus.publish(&prices(100.0)).await?;
    let ranking_hash = bus.publish(&ranking()).await?;

    let node = Node::start(server.url()).await?;
    let (etag, top) = until("the node to serve", || node.top()).await?;
    assert_eq!(top.meta.prices_hash, prices_hash);
    assert_eq!(top.meta.ranking_hash, ranking_hash);
    assert!(!etag.is_empty());
    assert_eq!(top.data.len(), 2);
    assert_eq!(top.data[0].symbol, "BTC");
    assert_eq!(top.data[0].price_usd, Some(100.0));
    // From the store alone: no notice went by after it started, and each kind was fetched once.
    assert_eq!(
        node.counter("topcoins_api_notices_received_total", &[]),
        0.0
    );
    for kind in ["prices", "ranking"] {
        assert_eq!(
            node.counter("topcoins_api_snapshot_fetches_total", &[("kind", kind)]),
            1.0,
            "{kind}"
        );
    }
    let ready = node.readiness().await?.context("ready")?;
    assert!(ready.nats_connected && !ready.stale && ready.coins == 2);
    node.stop().await
}

/// A loopback TCP proxy to the nats-server that the test can cut: closing it ends every
/// connection through it and turns new ones away, as a network partition would, while the
/// server itself goes on (so the test can announce a change the node cannot hear).
struct Proxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = timeout(WAIT, TcpListener::bind("127.0.0.1:0")).await??;
        let addr = listener.local_addr()?;
        let (open, open_rx) = watch::channel(true);
        let open_rx = Arc::new(open_rx);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut open = (*open_rx).clone();
                if !*open.borrow_and_update() {
                    continue; // dropped: the client sees the connection closed
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = open.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Ok(Self { addr, open, task })
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_announced_while_disconnected_is_served_after_reconnecting() -> Result<()> {
    let server = timeout(WAIT, NatsServer::start()).await??;
    let bus = Publisher::connect(&server).await?;
    let first = bus.publish(&prices(100.0)).await?;
    bus.publish(&ranking()).await?;
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port()).parse()?;
    let proxy = Proxy::start(upstream).await?;
    let node = Node::start(&proxy.url()).await?;
    let (etag, top) = until("the node to serve", || node.top()).await?;
    assert_eq!(top.meta.prices_hash, first);

    // Cut the node off, and announce a change while it cannot hear it.
    proxy.set_open(false);
    until("the node to see NATS gone", || async {
        Ok(node.readiness().await?.filter(|r| !r.nats_connected))
    })
    .await?;
    let heard = node.counter("topcoins_api_notices_received_total", &[]);
    let fetched = node.counter("topcoins_api_snapshot_fetches_total", &[("kind", "prices")]);
    let second = bus.publish(&prices(200.0)).await?;
    let (_, during) = node.top().await?.context("still serving while cut off")?;
    assert_eq!(during.meta.prices_hash, first, "nothing new reached it");
    assert!(during.meta.stale, "and it says its data may be old");

    // Back: the node reads the latest notices on reconnecting and serves the change.
    proxy.set_open(true);
    let (etag_after, after) = until("the change to be served", || async {
        Ok(node
            .top()
            .await?
            .filter(|(_, top)| top.meta.prices_hash == second && !top.meta.stale))
    })
    .await?;
    assert_ne!(etag_after, etag);
    assert_eq!(after.data[0].price_usd, Some(200.0));
    assert_eq!(
        node.counter("topcoins_api_notices_received_total", &[]),
        heard,
        "taken in without a notice: read from the store on reconnecting"
    );
    assert_eq!(
        node.counter("topcoins_api_snapshot_fetches_total", &[("kind", "prices")]),
        fetched + 1.0,
        "its bytes were not pushed to the node either: fetched by hash"
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_mismatch_is_counted_and_the_last_good_data_served() -> Result<()> {
    let server = timeout(WAIT, NatsServer::start()).await??;
    let bus = Publisher::connect(&server).await?;
    let good = bus.publish(&prices(100.0)).await?;
    bus.publish(&ranking()).await?;
    let node = Node::start(server.url()).await?;
    let (etag, top) = until("the node to serve", || node.top()).await?;
    assert_eq!(top.meta.prices_hash, good);
    let (_, _, body) = node.get("/").await?;

    // Bytes stored under a hash that is not theirs (valid prices, so only the hash can tell),
    // announced like any change.
    let (forged_bytes, _) = prices(666.0).encode();
    let claimed = SnapshotHash::of(b"what the notice claims");
    timeout(WAIT, bus.store.put_forged(claimed, forged_bytes.into())).await??;
    bus.announce(Kind::PRICES, claimed, 2).await?;
    until("the mismatch to be counted", || async {
        let counted = node.counter("topcoins_api_hash_mismatches_total", &[("kind", "prices")]);
        Ok((counted >= 1.0).then_some(()))
    })
    .await?;
    assert_eq!(
        node.counter("topcoins_api_hash_mismatches_total", &[("kind", "prices")]),
        1.0,
        "counted once"
    );
    let (status, etag_after, body_after) = node.get("/").await?;
    assert_eq!(status, 200);
    assert_eq!(etag_after, etag, "still serving the last good data");
    assert_eq!(body_after, body);

    // Not stuck on it: the next good change, which follows the forged notice, is served.
    let next = bus.publish(&prices(300.0)).await?;
    let (_, after) = until("the next good change to be served", || async {
        Ok(node
            .top()
            .await?
            .filter(|(_, top)| top.meta.prices_hash == next))
    })
    .await?;
    assert_eq!(after.data[0].price_usd, Some(300.0));
    assert_eq!(
        node.counter("topcoins_api_hash_mismatches_total", &[("kind", "prices")]),
        1.0
    );
    node.stop().await
}
