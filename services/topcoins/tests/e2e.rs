//! The core system end to end: real nats-server, simulator, both actors, API nodes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use common::{Harness, POLL, WAIT, eventually};
use futures::StreamExt;
use topcoins_bus::subjects;
use topcoins_schemas::api::{ErrorBody, TopResponse};
use topcoins_schemas::{HashNotice, Kind};

const COINS: usize = 600;

async fn etag_and_body(
    h: &Harness,
    node: &common::ApiNode,
    path: &str,
) -> Result<(u16, String, String)> {
    let r = h.get(&node.url(path)).await?;
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Ok((status, etag, r.text().await?))
}

/// Both nodes' answer to `/?limit=200`, when they give the same one.
async fn agreed(
    h: &Harness,
    a: &common::ApiNode,
    b: &common::ApiNode,
) -> Result<Option<(u16, String, String)>> {
    let x = etag_and_body(h, a, "/?limit=200").await?;
    let y = etag_and_body(h, b, "/?limit=200").await?;
    Ok((x == y).then_some(x))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_agree_and_switch_together() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let a = h.start_api().await?;
    let b = h.start_api().await?;
    h.ready(&a, "/").await?;
    h.ready(&b, "/").await?;
    let (status, first_etag, first_body) =
        eventually("both nodes to agree", || agreed(&h, &a, &b)).await?;
    assert_eq!(status, 200);
    let first: TopResponse = serde_json::from_str(&first_body)?;
    assert_eq!(first.data.len(), 200, "default limit is 200");
    assert_eq!(first.meta.count, 200);
    assert!(!first.meta.stale);
    for (i, e) in first.data.iter().enumerate() {
        assert_eq!(e.rank as usize, i + 1);
        assert!(e.price_usd.is_some(), "{} has no price", e.symbol);
    }

    h.tick().await?;
    let (_, second_etag, second_body) =
        eventually("both nodes to switch to new prices and ranking", || async {
            let both_new = |(_, _, body): &(u16, String, String)| {
                serde_json::from_str::<TopResponse>(body).is_ok_and(|r| {
                    r.meta.prices_hash != first.meta.prices_hash
                        && r.meta.ranking_hash != first.meta.ranking_hash
                })
            };
            Ok(agreed(&h, &a, &b).await?.filter(both_new))
        })
        .await?;
    assert_ne!(second_etag, first_etag);
    let second: TopResponse = serde_json::from_str(&second_body)?;
    assert_ne!(second.meta.prices_hash, first.meta.prices_hash);
    assert_ne!(second.meta.ranking_hash, first.meta.ranking_hash);
    assert_ne!(second.data, first.data);

    for c in [a.component, b.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_snapshot_fetched_once_and_unchanged_data_costs_nothing() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let client = async_nats::connect(h.nats.url()).await?;
    let mut notices = topcoins_bus::subscribe_notices(&client, subjects::KINDS).await?;
    let mut everything = topcoins_bus::watch_all(&client).await?;
    client.flush().await?;

    let a = h.start_api().await?;
    let b = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&a, "/").await?;
    h.ready(&b, "/").await?;
    for _ in 0..3 {
        let announced = (h.published("prices"), h.published("ranking"));
        h.tick().await?;
        eventually("both actors to announce the tick", || async {
            Ok(
                (h.published("prices") > announced.0 && h.published("ranking") > announced.1)
                    .then_some(()),
            )
        })
        .await?;
        // Settled: a poll of each kind found nothing new. (A ranking poll that straddled the
        // tick announced pages from two moments; the next one announces the tick's own.)
        let unchanged = |kind| {
            h.actor_metric(
                "topcoins_poll_cycles_total",
                &[("kind", kind), ("outcome", "unchanged")],
            )
        };
        let before = (unchanged("prices"), unchanged("ranking"));
        eventually("both actors to settle", || async {
            Ok((unchanged("prices") > before.0 && unchanged("ranking") > before.1).then_some(()))
        })
        .await?;
    }

    // Every notice announced so far: the subscriptions were made before the actors started,
    // so what they hold is exactly what the actors count as published.
    let announced = (h.published("prices") + h.published("ranking")) as usize;
    let mut distinct = [HashSet::new(), HashSet::new()];
    for _ in 0..announced {
        let received = tokio::time::timeout(WAIT, notices.next())
            .await?
            .expect("subscription open")?;
        let kind = usize::from(received.kind != Kind::PRICES);
        distinct[kind].insert(received.notice.hash);
    }
    // At least one snapshot at start and one per tick; a ranking poll that straddles a tick
    // reads pages from two moments and is a snapshot of its own, as with the real provider.
    let (prices_n, ranking_n) = (distinct[0].len() as f64, distinct[1].len() as f64);
    assert!(
        prices_n >= 4.0 && ranking_n >= 4.0,
        "{prices_n} {ranking_n}"
    );
    for node in [&a, &b] {
        eventually(
            "snapshots taken in (fetched or pushed) to equal the distinct hashes announced",
            || async {
                let p = taken_in(node, "prices");
                let r = taken_in(node, "ranking");
                Ok((p == prices_n && r == ranking_n).then_some(()))
            },
        )
        .await?;
    }

    // Now nothing moves: several polls later, nothing was published and nothing refetched.
    // Everything on the bus so far is the notices and the price events the actors counted.
    let sent =
        || h.published("prices") + h.published("ranking") + h.actor_metric(PRICE_EVENTS, &[]);
    let sent_before = sent();
    for _ in 0..sent_before as usize {
        tokio::time::timeout(WAIT, everything.next())
            .await?
            .expect("subscription open");
    }
    let unchanged_before = h_unchanged(&h);
    eventually("six more unchanged polls", || async {
        Ok((h_unchanged(&h) >= unchanged_before + 6.0).then_some(()))
    })
    .await?;
    assert_eq!(sent(), sent_before, "the actors published nothing");
    // And nothing crossed the bus: this window follows six counted polls, so a publish from
    // any of them would have arrived by now; it cannot pass for want of polling.
    let quiet = tokio::time::timeout(Duration::from_millis(300), everything.next()).await;
    assert!(
        quiet.is_err(),
        "something was published although nothing changed: {quiet:?}"
    );
    for node in [&a, &b] {
        assert_eq!(
            taken_in(node, "prices") + taken_in(node, "ranking"),
            prices_n + ranking_n
        );
        // The live path takes the bytes pushed as they were stored: each fetch is a round
        // trip that pushing saves.
        assert!(
            node.metric("topcoins_api_snapshots_pushed_total", &[]) >= prices_n + ranking_n - 2.0,
            "most snapshots arrive pushed, not fetched"
        );
    }
    for c in [a.component, b.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

/// Snapshots of `kind` a node fetched or took from a push: once per distinct hash.
fn taken_in(node: &common::ApiNode, kind: &str) -> f64 {
    node.metric("topcoins_api_snapshot_fetches_total", &[("kind", kind)])
        + node.metric("topcoins_api_snapshots_pushed_total", &[("kind", kind)])
}

const PRICE_EVENTS: &str = "topcoins_price_events_published_total";

fn h_unchanged(h: &Harness) -> f64 {
    common::metric(
        &h.actor_registry,
        "topcoins_poll_cycles_total",
        &[("outcome", "unchanged")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_csv_etag_and_errors() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;

    // Before any data: 503 with the error shape; alive but not ready.
    let (status, _, body) = etag_and_body(&h, &node, "/").await?;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<ErrorBody>(&body)?.error.code,
        "no_data"
    );
    assert_eq!(h.get(&node.url("/healthz")).await?.status(), 200);
    assert_eq!(h.get(&node.url("/readyz")).await?.status(), 503);

    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;
    assert_eq!(h.get(&node.url("/readyz")).await?.status(), 200);

    let count = |body: &str| {
        serde_json::from_str::<TopResponse>(body).map(|r| (r.data.len(), r.meta.count))
    };
    let (s, _, body) = etag_and_body(&h, &node, "/?limit=1").await?;
    assert_eq!((s, count(&body)?), (200, (1, 1)));
    // The universe has COINS coins (a few lack volume data but are still ranked).
    let (s, _, body) = etag_and_body(&h, &node, "/?limit=5000").await?;
    let (n, meta_count) = count(&body)?;
    assert_eq!(s, 200);
    assert_eq!(n, meta_count);
    assert!(
        n > COINS - 10 && n <= COINS,
        "fewer entries come back when fewer are known: {n}"
    );

    let long = "9".repeat(30);
    for bad in ["5001", "0", "-1", "abc", "1.5", "", &long] {
        let (s, _, body) = etag_and_body(&h, &node, &format!("/?limit={bad}")).await?;
        assert_eq!(s, 400, "limit={bad:?}");
        let err: ErrorBody = serde_json::from_str(&body)?;
        assert_eq!(err.error.code, "invalid_limit", "limit={bad:?}");
        assert!(!err.error.message.is_empty());
    }
    let (s, _, _) = etag_and_body(&h, &node, "/?limit=2&limit=3").await?;
    assert_eq!(s, 400);
    // Size limits: an overlong query string, a body where none belongs.
    let (s, _, body) =
        etag_and_body(&h, &node, &format!("/?limit=1&pad={}", "x".repeat(3000))).await?;
    assert_eq!(
        (
            s,
            serde_json::from_str::<ErrorBody>(&body)?
                .error
                .code
                .as_str()
        ),
        (414, "uri_too_long")
    );
    let r = h
        .http
        .get(node.url("/"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    // The unread body ends the connection, and the client is told so it does not reuse it.
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(
        serde_json::from_str::<ErrorBody>(&r.text().await?)?
            .error
            .code,
        "body_too_large"
    );
    let (s, _, body) = etag_and_body(&h, &node, "/nope").await?;
    assert_eq!(
        (
            s,
            serde_json::from_str::<ErrorBody>(&body)?
                .error
                .code
                .as_str()
        ),
        (404, "not_found")
    );

    // CSV, by parameter and by Accept.
    let r = h.get(&node.url("/?limit=3&format=csv")).await?;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "Rank,Symbol,Price USD");
    assert_eq!(lines.len(), 4);
    let (_, _, json) = etag_and_body(&h, &node, "/?limit=3").await?;
    let top: TopResponse = serde_json::from_str(&json)?;
    for (line, entry) in lines[1..].iter().zip(&top.data) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], entry.rank.to_string());
        assert_eq!(cells[1], entry.symbol);
        assert_eq!(cells[2].parse::<f64>()?, entry.price_usd.unwrap());
    }
    let by_accept = h
        .http
        .get(node.url("/?limit=3"))
        .header("accept", "text/csv")
        .send()
        .await?;
    assert_eq!(by_accept.text().await?, csv);

    // ETag and If-None-Match.
    let r = h.get(&node.url("/?limit=10")).await?;
    let etag = r.headers()["etag"].to_str()?.to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );
    let r = h
        .http
        .get(node.url("/?limit=10"))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await?.is_empty());
    let r = h
        .http
        .get(node.url("/?limit=11"))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "another limit is another representation");

    for c in [node.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_snapshot_is_rejected_and_counted() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let (etag, body) = h.ready(&node, "/?limit=50").await?;

    // Bytes stored under a hash that is not theirs, and a notice naming that hash.
    let client = async_nats::connect(h.nats.url()).await?;
    let store = topcoins_bus::SnapshotStore::open(client.clone()).await?;
    let claimed = topcoins_schemas::SnapshotHash::of(b"what the notice claims");
    store
        .put_forged(claimed, r#"{"source":"evil","coins":[]}"#.into())
        .await?;
    let notice = HashNotice {
        hash: claimed,
        as_of: time::OffsetDateTime::now_utc(),
        count: 1,
        source: "evil".into(),
        follows: None,
    };
    // Published raw, as a hostile publisher would, on the prices notice subject.
    let subject = subjects::hash_subject(Kind::PRICES);
    client
        .publish(subject.clone(), notice.to_bytes().into())
        .await?;
    // And junk on the same subject.
    client.publish(subject, "not json".into()).await?;
    client.flush().await?;

    eventually("the mismatch to be counted", || async {
        Ok(
            (node.metric("topcoins_api_hash_mismatches_total", &[("kind", "prices")]) == 1.0)
                .then_some(()),
        )
    })
    .await?;
    eventually("the junk to be counted", || async {
        Ok((node.metric(
            "topcoins_api_notices_rejected_total",
            &[("reason", "malformed")],
        ) == 1.0)
            .then_some(()))
    })
    .await?;
    let (s, etag_after, body_after) = etag_and_body(&h, &node, "/?limit=50").await?;
    assert_eq!(s, 200);
    assert_eq!(
        (etag_after, body_after),
        (etag, body),
        "still serving the last good data"
    );

    for c in [node.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_node_warms_from_store_and_restarted_actor_stays_quiet() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let first = h.start_api().await?;
    let (etag, _) = h.ready(&first, "/").await?;

    // Restart both actors on unchanged data: nothing is announced again.
    let client = async_nats::connect(h.nats.url()).await?;
    let mut everything = topcoins_bus::watch_all(&client).await?;
    client.flush().await?;
    price.stop().await;
    ranking.stop().await;
    let cycles_before = h_unchanged(&h);
    let announced_before_restart = (h.published("prices"), h.published("ranking"));
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    eventually("restarted actors to poll", || async {
        Ok((h_unchanged(&h) >= cycles_before + 4.0).then_some(()))
    })
    .await?;
    assert_eq!(
        (h.published("prices"), h.published("ranking")),
        announced_before_restart,
        "a restarted actor announced unchanged data"
    );
    // Nor anything else on the bus; the window follows four counted polls of the restarted
    // actors, so it cannot pass because they had not polled yet.
    let quiet = tokio::time::timeout(Duration::from_millis(300), everything.next()).await;
    assert!(
        quiet.is_err(),
        "a restarted actor republished unchanged data: {quiet:?}"
    );

    // A node started now serves at once from the stored snapshots, without a new notice.
    let second = h.start_api().await?;
    let (etag2, _) = h.ready(&second, "/").await?;
    assert_eq!(etag2, etag);
    assert_eq!(
        second.metric("topcoins_api_snapshot_fetches_total", &[]),
        2.0
    );

    // Per-coin price events follow a change, on subjects that decode to their symbol.
    // (The bus checks each event's symbol against the one its subject names.)
    let mut events = topcoins_bus::subscribe_prices(&client).await?;
    client.flush().await?;
    h.tick().await?;
    let mut seen = 0;
    while seen < 20 {
        let event = tokio::time::timeout(WAIT, events.next())
            .await?
            .expect("events")?;
        assert!(event.price_usd > 0.0);
        seen += 1;
    }

    for c in [first.component, second.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_stop_promptly_even_with_nats_gone() -> Result<()> {
    let mut h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&node, "/").await?;
    // The server goes first (as when a terminal's Ctrl-C reaches it too): draining must not
    // wait for a reconnect that will never come.
    h.nats.stop().await;
    eventually("the node to see NATS gone", || async {
        let r = h.get(&node.url("/readyz")).await?;
        let ready: topcoins_schemas::api::Readiness = serde_json::from_str(&r.text().await?)?;
        Ok((!ready.nats_connected).then_some(()))
    })
    .await?;
    for c in [node.component, price, ranking] {
        c.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), c.task)
            .await
            .expect("stopped within 5 s")?;
    }
    h.sim.stop().await;
    Ok(())
}
