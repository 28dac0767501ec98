//! Users, keys, watchlists, the tracked set and records end to end (issue 12): a real
//! nats-server, the simulator, `topcoins exchanges`, the recorder on SQLite and two API
//! nodes on the same database.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{ApiNode, Component, Harness, eventually};
use serde_json::{Value, json};
use topcoins_api::ApiConfig;
use topcoins_history::DatabaseUrl;

const ADMIN: &str = "admin-secret-for-tests";

struct Setup {
    h: Harness,
    nodes: [ApiNode; 2],
    exchanges: Component,
    _recorder: Component,
    database: DatabaseUrl,
    _dir: tempfile::TempDir,
}

async fn setup(key_rate: u32, key_burst: u32) -> Result<Setup> {
    let h = Harness::start(200).await?;
    let dir = tempfile::tempdir()?;
    let database = DatabaseUrl::Sqlite(dir.path().join("history.db"));
    let recorder = {
        let (database, nats) = (database.clone(), h.nats_config("recorder"));
        Component::spawn(move |s| {
            Box::pin(topcoins_recorder::run(
                topcoins_recorder::RecorderConfig::default(),
                database,
                nats,
                prometheus::Registry::new(),
                None,
                s.wait(),
            ))
        })
    };
    let exchanges = h.start_exchanges_with(&["kraken:btc-usd"], Some(database.clone()));
    let config = || ApiConfig {
        database_url: Some(database.clone()),
        admin_key: Some(ADMIN.to_owned()),
        key_rate,
        key_burst,
        ..ApiConfig::default()
    };
    let nodes = [
        h.start_api_with(config()).await?,
        h.start_api_with(config()).await?,
    ];
    for node in &nodes {
        eventually("the node's database and NATS", || async {
            let r = h
                .get(&node.url("/v1/metrics/kraken:btc-usd:price/records"))
                .await?;
            Ok((r.status() == 200).then_some(()))
        })
        .await?;
    }
    Ok(Setup {
        h,
        nodes,
        exchanges,
        _recorder: recorder,
        database,
        _dir: dir,
    })
}

async fn send(
    h: &Harness,
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value, reqwest::header::HeaderMap)> {
    let mut r = h.http.request(method, url);
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = tokio::time::timeout(common::WAIT, r.send()).await??;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
    };
    Ok((status, value, headers))
}

async fn create_user(s: &Setup, name: &str) -> Result<(String, String)> {
    let (status, body, _) = send(
        &s.h,
        reqwest::Method::POST,
        s.nodes[0].url("/v1/users"),
        Some(ADMIN),
        Some(json!({ "name": name })),
    )
    .await?;
    anyhow::ensure!(status == 201, "create user: {status} {body}");
    Ok((
        body["id"].as_str().context("id")?.to_owned(),
        body["api_key"].as_str().context("api_key")?.to_owned(),
    ))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A listed Kraken pair other than the ones tracked from the start.
async fn spare_pairs(s: &Setup, n: usize) -> Result<Vec<String>> {
    let exchanges: Value = eventually("Kraken's pairs", || async {
        let v: Value =
            s.h.get(&s.nodes[0].url("/v1/exchanges"))
                .await?
                .json()
                .await?;
        let has = v["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["id"] == "kraken"));
        Ok(has.then_some(v))
    })
    .await?;
    let kraken = exchanges["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["id"] == "kraken"))
        .context("kraken listed")?;
    Ok(kraken["pairs"]
        .as_array()
        .context("pairs")?
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| *p != "btc-usd")
        .take(n)
        .map(str::to_owned)
        .collect())
}

async fn kraken_pairs(s: &Setup) -> Result<Vec<String>> {
    let v: Value =
        s.h.get(&s.nodes[1].url("/v1/metrics?exchange=kraken&metric=price"))
            .await?
            .json()
            .await?;
    Ok(v["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|m| m["pair"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_track_metrics_see_records_and_ranks_and_nobody_else_can() -> Result<()> {
    let s = setup(1000, 1000).await?;
    let (_alice_id, alice) = create_user(&s, "alice").await?;
    let (_bob_id, bob) = create_user(&s, "bob").await?;
    let spare = spare_pairs(&s, 2).await?;
    let (p1, p2) = (&spare[0], &spare[1]);
    assert!(!kraken_pairs(&s).await?.contains(p1), "{p1} not polled yet");

    // Alice tracks three metrics of two pairs that nobody polled before.
    let wanted = [
        (p1.as_str(), "price"),
        (p1.as_str(), "volume"),
        (p2.as_str(), "high"),
    ];
    for (pair, metric) in wanted {
        let (status, body, _) = send(
            &s.h,
            reqwest::Method::POST,
            s.nodes[0].url("/v1/watchlist"),
            Some(&alice),
            Some(json!({"exchange": "kraken", "pair": pair, "metric": metric})),
        )
        .await?;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["id"], format!("kraken:{pair}:{metric}"));
    }
    // Again: already there.
    let (status, _, _) = send(
        &s.h,
        reqwest::Method::POST,
        s.nodes[1].url("/v1/watchlist"),
        Some(&alice),
        Some(json!({"exchange": "kraken", "pair": p1, "metric": "price"})),
    )
    .await?;
    assert_eq!(status, 200);

    // Polled within an interval or so (the harness polls every 100 ms), no restart.
    let started = Instant::now();
    eventually("the watched pairs polled", || async {
        let pairs = kraken_pairs(&s).await?;
        Ok((pairs.contains(p1) && pairs.contains(p2)).then_some(()))
    })
    .await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "polled after {took:?}");

    // Records: one per poll, unchanged polls included (the simulator's market is frozen, so
    // after the first poll every poll is unchanged and announces nothing).
    let id = format!("kraken:{p1}:price");
    let announced = s.h.published("kraken_tickers");
    let records: Value = eventually("several records of an unchanged metric", || async {
        let v: Value =
            s.h.get(&s.nodes[1].url(&format!("/v1/metrics/{id}/records")))
                .await?
                .json()
                .await?;
        Ok((v["data"].as_array().map_or(0, Vec::len) >= 5).then_some(v))
    })
    .await?;
    assert_eq!(
        s.h.published("kraken_tickers"),
        announced,
        "the records came from unchanged polls"
    );
    let data = records["data"].as_array().unwrap();
    let times: Vec<i64> = data.iter().map(|r| r["time"].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "ascending, each once"
    );
    let current: Value =
        s.h.get(&s.nodes[0].url(&format!("/v1/metrics/{id}")))
            .await?
            .json()
            .await?;
    assert!(
        data.iter().all(|r| r["value"] == current["value"]),
        "a frozen market records its one value"
    );
    // CSV and paging.
    let csv =
        s.h.get(&s.nodes[0].url(&format!("/v1/metrics/{id}/records?format=csv&limit=2")))
            .await?;
    assert_eq!(csv.status(), 200);
    let cursor = csv.headers()["x-next-cursor"].to_str()?.to_owned();
    let text = csv.text().await?;
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(text.lines().next(), Some("time,value"));
    assert_eq!(cursor, times[1].to_string());

    // The watchlist: every metric with its value, rank and records.
    let watchlist: Value = eventually("the watchlist with ranks", || async {
        let (status, v, _) = send(
            &s.h,
            reqwest::Method::GET,
            s.nodes[1].url("/v1/watchlist"),
            Some(&alice),
            None,
        )
        .await?;
        anyhow::ensure!(status == 200, "{status} {v}");
        let ready = v["data"].as_array().is_some_and(|d| {
            d.len() == 3
                && d.iter().all(|e| {
                    e["rank"].is_object() && e["records"].as_array().is_some_and(|r| r.len() >= 2)
                })
        });
        Ok(ready.then_some(v))
    })
    .await?;
    let ids: Vec<&str> = watchlist["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = wanted
        .iter()
        .map(|(p, m)| format!("kraken:{p}:{m}"))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    for e in watchlist["data"].as_array().unwrap() {
        assert!(e["value"].is_number(), "{e}");
        assert!(e["rank"]["position"].as_u64().unwrap() >= 1);
    }
    // Paging.
    let (_, page, _) = send(
        &s.h,
        reqwest::Method::GET,
        s.nodes[0].url("/v1/watchlist?limit=2"),
        Some(&alice),
        None,
    )
    .await?;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["meta"]["next_cursor"], expected[1]);

    // Bob sees none of it and can delete none of it.
    let (status, v, _) = send(
        &s.h,
        reqwest::Method::GET,
        s.nodes[0].url("/v1/watchlist"),
        Some(&bob),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!([]));
    let (status, v, _) = send(
        &s.h,
        reqwest::Method::DELETE,
        s.nodes[0].url(&format!("/v1/watchlist/kraken/{p1}/price")),
        Some(&bob),
        None,
    )
    .await?;
    assert_eq!((status, code(&v)), (404, "not_watched"));
    let (_, keys, _) = send(
        &s.h,
        reqwest::Method::GET,
        s.nodes[0].url("/v1/keys"),
        Some(&alice),
        None,
    )
    .await?;
    let alice_key = keys["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(keys["data"][0].get("api_key").is_none(), "never the key");
    let (status, v, _) = send(
        &s.h,
        reqwest::Method::DELETE,
        s.nodes[1].url(&format!("/v1/keys/{alice_key}")),
        Some(&bob),
        None,
    )
    .await?;
    assert_eq!((status, code(&v)), (404, "unknown_key"));

    // Without a key, with a wrong one, with a user's key where the admin key is needed.
    for (key, want) in [(None, "missing_key"), (Some("tck_nope"), "invalid_key")] {
        let (status, v, headers) = send(
            &s.h,
            reqwest::Method::GET,
            s.nodes[0].url("/v1/watchlist"),
            key,
            None,
        )
        .await?;
        assert_eq!((status, code(&v)), (401, want));
        assert!(headers.contains_key("www-authenticate"));
    }
    let wrong = format!("tck_{}", "0".repeat(64));
    let (status, v, _) = send(
        &s.h,
        reqwest::Method::GET,
        s.nodes[0].url("/v1/keys"),
        Some(&wrong),
        None,
    )
    .await?;
    assert_eq!((status, code(&v)), (401, "invalid_key"));
    let (status, v, _) = send(
        &s.h,
        reqwest::Method::POST,
        s.nodes[0].url("/v1/users"),
        Some(&bob),
        Some(json!({"name": "mallory"})),
    )
    .await?;
    assert_eq!((status, code(&v)), (403, "not_admin"));
    // Bad bodies and entries.
    for (body, status_want, code_want) in [
        (json!({"exchange": "kraken"}), 400, "invalid_body"),
        (
            json!({"exchange": "ftx", "pair": "btc-usd", "metric": "price"}),
            400,
            "unknown_exchange",
        ),
        (
            json!({"exchange": "kraken", "pair": "BTCUSD", "metric": "price"}),
            400,
            "invalid_pair",
        ),
        (
            json!({"exchange": "kraken", "pair": "btc-usd", "metric": "open"}),
            400,
            "unknown_metric_kind",
        ),
        (
            json!({"exchange": "kraken", "pair": "zzz-usd", "metric": "price"}),
            404,
            "unknown_pair",
        ),
    ] {
        let (status, v, _) = send(
            &s.h,
            reqwest::Method::POST,
            s.nodes[0].url("/v1/watchlist"),
            Some(&bob),
            Some(body.clone()),
        )
        .await?;
        assert_eq!((status, code(&v)), (status_want, code_want), "{body}");
    }

    // The last watcher of p2 deletes it: it is no longer polled. p1 stays (two metrics).
    let (status, _, _) = send(
        &s.h,
        reqwest::Method::DELETE,
        s.nodes[1].url(&format!("/v1/watchlist/kraken/{p2}/high")),
        Some(&alice),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    eventually("the unwatched pair no longer polled", || async {
        let pairs = kraken_pairs(&s).await?;
        Ok((!pairs.contains(p2) && pairs.contains(p1)).then_some(()))
    })
    .await?;
    let cycles = s.h.cycles("kraken_tickers");
    s.h.cycles_past("kraken_tickers", cycles, 3.0).await?;
    assert!(!kraken_pairs(&s).await?.contains(p2));
    assert!(kraken_pairs(&s).await?.contains(p1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_every_node_within_a_second() -> Result<()> {
    let s = setup(1000, 1000).await?;
    let (_, first) = create_user(&s, "carol").await?;
    // A second key, for rotation.
    let (status, second, _) = send(
        &s.h,
        reqwest::Method::POST,
        s.nodes[0].url("/v1/keys"),
        Some(&first),
        None,
    )
    .await?;
    assert_eq!(status, 201);
    let second_key = second["api_key"].as_str().unwrap().to_owned();
    let first_id = {
        let (_, keys, _) = send(
            &s.h,
            reqwest::Method::GET,
            s.nodes[0].url("/v1/keys"),
            Some(&second_key),
            None,
        )
        .await?;
        assert_eq!(keys["data"].as_array().unwrap().len(), 2);
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] != second["id"])
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Both nodes know the first key (and cache it).
    for node in &s.nodes {
        let (status, _, _) = send(
            &s.h,
            reqwest::Method::GET,
            node.url("/v1/watchlist"),
            Some(&first),
            None,
        )
        .await?;
        assert_eq!(status, 200);
    }
    // Revoked on node 0 with the second key.
    let (status, _, _) = send(
        &s.h,
        reqwest::Method::DELETE,
        s.nodes[0].url(&format!("/v1/keys/{first_id}")),
        Some(&second_key),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let revoked_at = Instant::now();
    for node in &s.nodes {
        loop {
            let (status, _, _) = send(
                &s.h,
                reqwest::Method::GET,
                node.url("/v1/watchlist"),
                Some(&first),
                None,
            )
            .await?;
            if status == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "the revoked key still works on a node after a second"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The second key still works everywhere.
    for node in &s.nodes {
        let (status, _, _) = send(
            &s.h,
            reqwest::Method::GET,
            node.url("/v1/watchlist"),
            Some(&second_key),
            None,
        )
        .await?;
        assert_eq!(status, 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_key_are_limited_with_retry_after() -> Result<()> {
    let s = setup(1, 3).await?;
    let (_, key) = create_user(&s, "dave").await?;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let (status, v, headers) = send(
            &s.h,
            reqwest::Method::GET,
            s.nodes[0].url("/v1/keys"),
            Some(&key),
            None,
        )
        .await?;
        if status == 429 {
            assert_eq!(code(&v), "rate_limited");
            retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    // Other keys, and the public routes, are not limited by it.
    let (_, other) = create_user(&s, "erin").await?;
    let (status, _, _) = send(
        &s.h,
        reqwest::Method::GET,
        s.nodes[0].url("/v1/keys"),
        Some(&other),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let r = s.h.get(&s.nodes[0].url("/v1/exchanges")).await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

/// The deviation of `id` in the newest ranks announced after `since`, if there are such.
async fn ranked_after(
    store: &topcoins_bus::SnapshotStore,
    id: &str,
    since: time::OffsetDateTime,
) -> Result<Option<Option<f64>>> {
    use topcoins_schemas::{RanksSnapshot, Snapshot};
    let Some(latest) = store.latest(RanksSnapshot::KIND).await? else {
        return Ok(None);
    };
    if latest.notice.as_of <= since {
        return Ok(None);
    }
    let ranks = RanksSnapshot::decode(&store.fetch(latest.notice.hash).await?)?;
    Ok(ranks.get(id).map(|r| r.stddev_24h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_ranks_start_from_the_recorded_day() -> Result<()> {
    let s = setup(1000, 1000).await?;
    let id = "kraken:btc-usd:price";
    // Two market moves, each polled a few times and recorded.
    for _ in 0..2 {
        s.h.tick().await?;
        let cycles = s.h.cycles("kraken_tickers");
        s.h.cycles_past("kraken_tickers", cycles, 3.0).await?;
    }
    let records: Value = eventually("records of two prices", || async {
        let v: Value =
            s.h.get(&s.nodes[0].url(&format!("/v1/metrics/{id}/records")))
                .await?
                .json()
                .await?;
        let mut values: Vec<f64> = v["data"]
            .as_array()
            .map(|d| d.iter().filter_map(|r| r["value"].as_f64()).collect())
            .unwrap_or_default();
        values.dedup();
        Ok((values.len() >= 2).then_some(v))
    })
    .await?;
    assert!(records["data"].as_array().unwrap().len() >= 4);

    // The exchange actors restart with the market frozen: every new poll has the same price,
    // so without the day's records the deviation would be 0 (or null).
    let Setup {
        h,
        exchanges,
        database,
        ..
    } = s;
    exchanges.stop().await;
    let restarted = time::OffsetDateTime::now_utc();
    let _exchanges = h.start_exchanges_with(&["kraken:btc-usd"], Some(database));
    let store = topcoins_bus::SnapshotStore::open(async_nats::connect(h.nats.url()).await?).await?;
    let sd = eventually("ranks announced after the restart", || async {
        Ok(ranked_after(&store, id, restarted).await?.flatten())
    })
    .await?;
    assert!(sd > 0.0, "the deviation covers the recorded day: {sd}");
    Ok(())
}
