//! A three-node NATS cluster on loopback: API nodes on different members, actors on a third.
//! Notices and snapshots reach every node, and stopping a member interrupts nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use common::{ApiNode, Harness, eventually};
use topcoins_schemas::api::TopResponse;
use topcoins_testkit::NatsServer;

async fn cluster() -> Result<Vec<NatsServer>> {
    let servers = topcoins_testkit::nats::cluster(3, &[]).await?;
    // A cluster's JetStream answers once its members have elected a meta leader, which takes
    // a few seconds (more on a busy machine): wait for it, and create the replicated streams.
    let client = async_nats::connect(servers[2].url()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match topcoins_bus::SnapshotStore::open_replicated(client.clone(), 3).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => anyhow::bail!("cluster JetStream not ready after 90 s: {e}"),
        }
    }
    Ok(servers)
}

async fn prices_hash(h: &Harness, node: &ApiNode) -> Result<String> {
    let top: TopResponse =
        serde_json::from_str(&h.get(&node.url("/?limit=20")).await?.text().await?)?;
    Ok(top.meta.prices_hash.to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_survives_losing_one() -> Result<()> {
    let mut servers = cluster().await?;
    let h = Harness::start(300).await?;
    let urls: Vec<String> = servers.iter().map(|s| s.url().to_owned()).collect();
    let a = h.start_api_on(&urls[0], 3).await?;
    let b = h.start_api_on(&urls[1], 3).await?;
    let (price, ranking) = h.start_actors_on(&urls[2], 3);
    h.ready(&a, "/").await?;
    h.ready(&b, "/").await?;

    // A change reaches both nodes, through members they are not connected to.
    let before = prices_hash(&h, &a).await?;
    h.tick().await?;
    for node in [&a, &b] {
        eventually("new prices on every node", || async {
            Ok((prices_hash(&h, node).await? != before).then_some(()))
        })
        .await?;
    }

    // Steady load on both nodes while node A's own member goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = [a.url("/?limit=20"), b.url("/?limit=20")]
        .into_iter()
        .map(|url| {
            let (stop, failed, ok) = (stop.clone(), failed.clone(), ok.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // Requests are flowing before the member goes, and keep flowing after (below).
    let ok_before = eventually("the load to be under way", || async {
        let n = ok.load(Ordering::Relaxed);
        Ok((n >= 50).then_some(n))
    })
    .await?;
    servers[0].stop().await;
    let before = prices_hash(&h, &a).await?;
    h.tick().await?;
    for node in [&a, &b] {
        eventually("new prices after losing a member", || async {
            Ok((prices_hash(&h, node).await? != before).then_some(()))
        })
        .await?;
    }
    eventually("the load to go on after the member went", || async {
        Ok((ok.load(Ordering::Relaxed) >= ok_before + 50).then_some(()))
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await?;
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed while a member was down"
    );
    for c in [a.component, b.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}
