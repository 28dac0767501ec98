//! Reliability against a real nats-server: the bus going away under load, and shutdown.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Harness, POLL, eventually, metric};
use futures::FutureExt;
use topcoins_schemas::api::TopResponse;

const COINS: usize = 300;
/// How long NATS stays away in the outage test.
const OUTAGE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    stale: AtomicU64,
}

/// Requests `url` back to back from `clients` tasks until `stop`, counting outcomes.
fn steady_load(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (url, stop, load) = (url.clone(), stop.clone(), load.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = async {
                        let r = http.get(&url).send().await?;
                        anyhow::ensure!(r.status() == 200, "status {}", r.status());
                        Ok(serde_json::from_slice::<TopResponse>(&r.bytes().await?)?)
                    }
                    .await;
                    match outcome {
                        Ok(top) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            if top.meta.stale {
                                load.stale.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            load.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_under_load_costs_no_request() -> Result<()> {
    let mut h = Harness::start(COINS).await?;
    let a = h.start_api().await?;
    let b = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    h.ready(&a, "/").await?;
    h.ready(&b, "/").await?;
    let before: TopResponse =
        serde_json::from_str(&h.get(&a.url("/?limit=20")).await?.text().await?)?;
    assert!(!before.meta.stale);

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let mut tasks = steady_load(a.url("/?limit=20"), 4, stop.clone(), load.clone());
    tasks.extend(steady_load(
        b.url("/?limit=20"),
        4,
        stop.clone(),
        load.clone(),
    ));
    eventually("the load to be under way", || async {
        Ok((load.ok.load(Ordering::Relaxed) >= 100).then_some(()))
    })
    .await?;

    // NATS goes away; the market moves meanwhile.
    h.nats.stop().await;
    for node in [&a, &b] {
        eventually("the node to see NATS gone", || async {
            let r = h.get(&node.url("/readyz")).await?;
            let ready: topcoins_schemas::api::Readiness = serde_json::from_str(&r.text().await?)?;
            Ok((!ready.nats_connected).then_some(()))
        })
        .await?;
    }
    h.tick().await?;
    let during: TopResponse =
        serde_json::from_str(&h.get(&a.url("/?limit=20")).await?.text().await?)?;
    ensure!(
        during.meta.stale,
        "data served during the outage says it is stale"
    );
    ensure!(
        during.meta.prices_as_of == before.meta.prices_as_of,
        "and how old it is"
    );
    // The outage's length is what this test is about, not a wait for something to happen:
    // ten seconds, long past every client's reconnect-delay ceiling, with the load answered,
    // stale, all along (an actor does not finish poll cycles while the bus is away, so there
    // is no count of them to wait on).
    tokio::time::sleep(OUTAGE).await;
    let stale_during = eventually("stale answers during the outage", || async {
        let stale = load.stale.load(Ordering::Relaxed);
        Ok((stale >= 100).then_some(stale))
    })
    .await?;

    // Back: without restarting anything, the change made during the outage is served.
    h.nats.restart().await?;
    let back = Instant::now();
    for node in [&a, &b] {
        let caught = eventually("the change made during the outage to be served", || async {
            let top: TopResponse =
                serde_json::from_str(&h.get(&node.url("/?limit=20")).await?.text().await?)?;
            Ok((top.meta.prices_hash != before.meta.prices_hash && !top.meta.stale).then_some(()))
        })
        .await;
        if caught.is_err() {
            // What the node saw of the bus, so that a failure says where it stopped.
            let served = h.get(&node.url("/?limit=1")).await?.text().await?;
            let seen: Vec<String> = [
                "topcoins_api_notices_received_total",
                "topcoins_api_snapshot_fetches_total",
                "topcoins_api_snapshot_fetch_errors_total",
                "topcoins_api_merges_total",
                "topcoins_api_stale",
            ]
            .iter()
            .map(|m| format!("{m}={}", metric(&node.registry, m, &[])))
            .collect();
            // And whether the price actor announced the change at all.
            let announced = match async_nats::connect(h.nats.url()).await {
                Ok(client) => match topcoins_bus::SnapshotStore::open(client).await {
                    Ok(store) => format!(
                        "{:?}",
                        store
                            .latest(topcoins_schemas::Kind::PRICES)
                            .await
                            .map(|n| n.map(|n| n.notice.hash))
                    ),
                    Err(e) => format!("store: {e}"),
                },
                Err(e) => format!("connect: {e}"),
            };
            caught.with_context(|| {
                format!(
                    "node {} serves {served}; {}; before: {}; latest prices notice: {announced}",
                    node.addr,
                    seen.join(", "),
                    before.meta.prices_hash
                )
            })?;
        }
    }
    let caught_up = back.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    // The waits above saw the load answered before the outage and, marked stale, all through
    // it (at least {stale_during}); what is left to check is that none of it failed.
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    println!("{ok} requests, {stale_during} of them stale during the outage");
    // How fast is for bench/propagation.sh to measure; here it is only reported.
    println!("new data {caught_up:?} after NATS came back");
    for c in [a.component, b.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bus_messages_are_dropped_and_counted() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api().await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let (etag, _) = h.ready(&node, "/").await?;
    let client = async_nats::connect(h.nats.url()).await?;
    let huge = vec![b'{'; 64 * 1024];
    // Raw bytes on the notice subjects, as a broken or hostile publisher would send them.
    for subject in topcoins_bus::subjects::KINDS
        .iter()
        .map(|k| topcoins_bus::subjects::hash_subject(*k))
    {
        client.publish(subject.clone(), huge.clone().into()).await?;
        client
            .publish(subject.clone(), "\u{0}\u{1}binary".into())
            .await?;
        client
            .publish(
                subject,
                r#"{"hash":"zz","as_of":"yesterday","count":-1,"source":7}"#.into(),
            )
            .await?;
    }
    client.flush().await?;
    eventually("bad messages to be counted", || async {
        let too_large = node.metric(
            "topcoins_api_notices_rejected_total",
            &[("reason", "too_large")],
        );
        let malformed = node.metric(
            "topcoins_api_notices_rejected_total",
            &[("reason", "malformed")],
        );
        // Every kind's subject got one oversized and two malformed messages.
        let kinds = topcoins_bus::subjects::KINDS.len() as f64;
        Ok((too_large == kinds && malformed == 2.0 * kinds).then_some(()))
    })
    .await?;
    let r = h.get(&node.url("/")).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["etag"].to_str()?,
        etag,
        "still serving the same data"
    );
    for c in [node.component, price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

/// The real binary, as an operator stops it: SIGTERM while clients are busy. Every answer
/// that arrives is whole; the process exits 0 promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let price = h.start_price(POLL);
    let ranking = h.start_ranking(POLL);
    let (mut child, addr, _logs) = common::spawn_and_wait_for_addr(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_topcoins"))
            .args(["api", "--listen", "127.0.0.1:0"])
            .env("NATS_URL", h.nats.url())
            .env("RUST_LOG", "warn,topcoins_api=info"),
        "api node listening",
    )
    .await?;
    let url = format!("http://{addr}/?limit=300");
    eventually("the node to serve", || async {
        Ok(h.http
            .get(&url)
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ()))
    })
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let cut_off = Arc::new(AtomicU64::new(0));
    let whole = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, stop, cut_off, whole) =
                (url.clone(), stop.clone(), cut_off.clone(), whole.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        // No response at all (refused, or an idle connection closed as the
                        // request went out): nothing was cut off. The node is going away.
                        Err(_) => break,
                        Ok(r) => match r
                            .bytes()
                            .await
                            .map(|b| serde_json::from_slice::<TopResponse>(&b))
                        {
                            Ok(Ok(_)) => {
                                whole.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                cut_off.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    }
                }
            })
        })
        .collect();
    eventually("answers under way", || async {
        Ok((whole.load(Ordering::Relaxed) > 50).then_some(()))
    })
    .await?;
    let pid = child.id().expect("running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(5), child.wait()).await??;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(cut_off.load(Ordering::Relaxed), 0, "responses were cut off");
    assert!(whole.load(Ordering::Relaxed) > 50);
    for c in [price, ranking, h.sim] {
        c.stop().await;
    }
    Ok(())
}

/// Services authenticate to NATS with what they are given, and get nowhere without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_authentication_user_password_and_token() -> Result<()> {
    for (server_args, good, bad) in [
        (
            &["--user", "topcoins", "--pass", "s3cret"][..],
            topcoins_bus::NatsAuth {
                user: Some("topcoins".into()),
                password: Some("s3cret".into()),
                ..Default::default()
            },
            topcoins_bus::NatsAuth {
                user: Some("topcoins".into()),
                password: Some("wrong".into()),
                ..Default::default()
            },
        ),
        (
            &["--auth", "t0ken"][..],
            topcoins_bus::NatsAuth {
                token: Some("t0ken".into()),
                ..Default::default()
            },
            topcoins_bus::NatsAuth::default(),
        ),
    ] {
        let h = Harness::start_with_server(COINS, server_args).await?;
        // Wrong or missing credentials: the node starts, keeps trying, and has nothing to serve.
        let refused = h.start_api_with_auth(bad).await?;
        let price = h.start_price_with_auth(good.clone());
        let ranking = h.start_ranking_with_auth(good.clone());
        let accepted = h.start_api_with_auth(good).await?;
        h.ready(&accepted, "/").await?;
        let r = h.get(&refused.url("/readyz")).await?;
        assert_eq!(
            r.status(),
            503,
            "a node with bad credentials must not have data"
        );
        for c in [accepted.component, refused.component, price, ranking, h.sim] {
            c.stop().await;
        }
    }
    Ok(())
}

/// Two instances of each actor: exactly one of each polls, the other takes over within two
/// intervals when it goes, and no hash is announced twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_each_actor_one_polls_and_the_other_takes_over() -> Result<()> {
    use prometheus::Registry;
    use topcoins_poller::{PollerMetrics, ServiceContext};
    use topcoins_upstream::UpstreamMetrics;

    const INTERVAL: Duration = Duration::from_millis(500);
    let h = Harness::start(COINS).await?;
    let client = async_nats::connect(h.nats.url()).await?;
    let mut notices =
        topcoins_bus::subscribe_notices(&client, topcoins_bus::subjects::KINDS).await?;
    client.flush().await?;

    let instance = |name: &str| -> Result<(Registry, ServiceContext)> {
        let registry = Registry::new();
        let context = ServiceContext {
            nats: h.nats_config(name),
            http: Harness::http_config(),
            retention: Duration::from_secs(3600),
            upstream_metrics: UpstreamMetrics::register(&registry)?,
            poller_metrics: PollerMetrics::register(&registry)?,
            lease: true,
        };
        Ok((registry, context))
    };
    let mut prices = Vec::new();
    let mut rankings = Vec::new();
    for i in 0..2 {
        let (registry, context) = instance(&format!("price-{i}"))?;
        let config = h.price_config(INTERVAL);
        prices.push((
            registry,
            common::Component::spawn(move |s| {
                Box::pin(topcoins_price::run(config, context, s.wait()))
            }),
        ));
        let (registry, context) = instance(&format!("ranking-{i}"))?;
        let config = topcoins_ranking::RankingConfig {
            cryptocompare_url: h.sim_url(),
            cryptocompare_api_key: None,
            ranking_interval: Some(INTERVAL),
            ranking_universe: Some(COINS),
        };
        rankings.push((
            registry,
            common::Component::spawn(move |s| {
                Box::pin(topcoins_ranking::run(config, context, s.wait()))
            }),
        ));
    }
    let node = h.start_api().await?;
    h.ready(&node, "/").await?;
    let announced = |kind: &str| {
        let of = |instances: &[(Registry, common::Component)]| {
            instances
                .iter()
                .map(|(r, _)| {
                    common::metric(r, "topcoins_notices_published_total", &[("kind", kind)])
                })
                .sum::<f64>()
        };
        if kind == "prices" {
            of(&prices)
        } else {
            of(&rankings)
        }
    };
    for _ in 0..3 {
        let before = (announced("prices"), announced("ranking"));
        h.tick().await?;
        eventually("the tick to be announced", || async {
            Ok((announced("prices") > before.0 && announced("ranking") > before.1).then_some(()))
        })
        .await?;
    }

    // Polling cycles that were not stand-by, per instance.
    let polled = |r: &Registry, kind: &str| {
        common::metric(r, "topcoins_poll_cycles_total", &[("kind", kind)])
            - common::metric(
                r,
                "topcoins_poll_cycles_total",
                &[("kind", kind), ("outcome", "standby")],
            )
    };
    let standby = |r: &Registry, kind: &str| {
        common::metric(
            r,
            "topcoins_poll_cycles_total",
            &[("kind", kind), ("outcome", "standby")],
        )
    };
    for (pair, kind) in [(&prices, "prices"), (&rankings, "ranking")] {
        let active: Vec<f64> = pair.iter().map(|(r, _)| polled(r, kind)).collect();
        assert!(
            (active[0] > 0.0 && active[1] == 0.0) || (active[0] == 0.0 && active[1] > 0.0),
            "{kind}: exactly one instance polls, got {active:?}"
        );
        let follower = if active[0] > 0.0 { 1 } else { 0 };
        assert!(
            standby(&pair[follower].0, kind) > 0.0,
            "{kind}: the other stands by"
        );
    }

    // The price lease holder goes away: the other polls within two intervals.
    let leader = if polled(&prices[0].0, "prices") > 0.0 {
        0
    } else {
        1
    };
    let (follower_registry, follower) = prices.remove(1 - leader);
    let (gone_registry, gone) = prices.remove(0);
    let before = polled(&follower_registry, "prices");
    gone.stop().await;
    let stopped = std::time::Instant::now();
    while polled(&follower_registry, "prices") == before {
        assert!(
            stopped.elapsed() < INTERVAL * 2,
            "no takeover within two intervals"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let takeover = stopped.elapsed();
    // The new holder announces the next change, and nothing already announced.
    let served =
        serde_json::from_str::<TopResponse>(&h.get(&node.url("/?limit=5")).await?.text().await?)?
            .meta
            .prices_hash;
    h.tick().await?;
    eventually("the new holder's prices to be served", || async {
        let top: TopResponse =
            serde_json::from_str(&h.get(&node.url("/?limit=5")).await?.text().await?)?;
        Ok((top.meta.prices_hash != served).then_some(()))
    })
    .await?;

    // Every notice announced, by any instance: the subscription was made before they
    // started, so it holds exactly what their registries count as published.
    let published = |r: &Registry| common::metric(r, "topcoins_notices_published_total", &[]);
    let total = [&follower_registry, &gone_registry]
        .into_iter()
        .chain(rankings.iter().map(|(r, _)| r))
        .map(published)
        .sum::<f64>();
    let mut seen: HashMap<(String, String), u32> = HashMap::new();
    for _ in 0..total as usize {
        let received = tokio::time::timeout(common::WAIT, notices.next())
            .await?
            .context("subscription open")??;
        *seen
            .entry((received.kind.to_string(), received.notice.hash.to_hex()))
            .or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "hashes announced more than once: {repeated:?}"
    );
    assert!(seen.len() >= 8, "{seen:?}");
    println!("takeover after {takeover:?}");
    for c in [node.component, follower]
        .into_iter()
        .chain(rankings.into_iter().map(|(_, c)| c))
    {
        c.stop().await;
    }
    h.sim.stop().await;
    Ok(())
}

/// Real processes, really killed: two `topcoins price --lease`; SIGKILL the holder (no clean
/// hand-over, so the lease must expire); the other polls within two intervals; the killed one,
/// started again, stands by and announces nothing already announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_lease_holder_is_replaced_within_two_intervals() -> Result<()> {
    const INTERVAL_MS: u64 = 1000;
    let h = Harness::start(COINS).await?;
    let client = async_nats::connect(h.nats.url()).await?;
    let mut notices =
        topcoins_bus::subscribe_notices(&client, &[topcoins_schemas::Kind::PRICES]).await?;
    client.flush().await?;
    let binary = env!("CARGO_BIN_EXE_topcoins");
    // Each instance, the restarted one too, serves its metrics on a port the OS picks and
    // says which in its log.
    let command = || {
        let mut command = tokio::process::Command::new(binary);
        command
            .args([
                "price",
                "--lease",
                "--cmc-url",
                &h.sim_url(),
                "--price-universe",
                "300",
            ])
            .args(["--price-interval", &format!("{INTERVAL_MS}ms")])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("NATS_URL", h.nats.url())
            .env("RUST_LOG", "warn,topcoins::metrics_http=info");
        command
    };
    const LISTENING: &str = "metrics listening";
    let (first, first_addr, _first_logs) =
        common::spawn_and_wait_for_addr(&mut command(), LISTENING).await?;
    let (second, second_addr, _second_logs) =
        common::spawn_and_wait_for_addr(&mut command(), LISTENING).await?;
    let mut children = vec![first, second];
    let mut addrs = [first_addr, second_addr];
    // Prices poll cycles read from a process's /metrics: all of them, and those that polled
    // (not stand-by).
    let cycles = |addr: std::net::SocketAddr| {
        let http = h.http.clone();
        async move {
            let text = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            let sum = |outcome: Option<&str>| {
                text.lines()
                    .filter(|l| {
                        l.starts_with("topcoins_poll_cycles_total{")
                            && l.contains("kind=\"prices\"")
                    })
                    .filter(|l| outcome.is_none_or(|o| l.contains(&format!("outcome=\"{o}\""))))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            };
            let all = sum(None);
            Ok::<(f64, f64), anyhow::Error>((all, all - sum(Some("standby"))))
        }
    };
    let polled =
        |addr: std::net::SocketAddr| async move { Ok::<f64, anyhow::Error>(cycles(addr).await?.1) };
    // Waits until the instance at `addr` has finished `n` more cycles, of any outcome, than
    // `since`: the counted event after which "it did not poll" is not vacuous.
    let cycles_past = |addr: std::net::SocketAddr, since: f64, n: f64| async move {
        eventually(&format!("{n} more cycles at {addr}"), || async {
            Ok((cycles(addr).await?.0 >= since + n).then_some(()))
        })
        .await
    };
    eventually("one instance to poll", || async {
        let (a, b) = (
            polled(addrs[0]).await.unwrap_or(0.0),
            polled(addrs[1]).await.unwrap_or(0.0),
        );
        Ok(((a > 0.0) != (b > 0.0)).then_some(()))
    })
    .await?;
    let leader = if polled(addrs[0]).await? > 0.0 { 0 } else { 1 };
    let other = 1 - leader;
    // The holder's first poll announced the market, which stays frozen from here on: any
    // later prices notice would announce data already announced.
    tokio::time::timeout(common::WAIT, notices.next())
        .await
        .context("the holder's first notice")?
        .context("subscription open")??;
    // Two more cycles of the other instance, and it still has not polled.
    cycles_past(addrs[other], cycles(addrs[other]).await?.0, 2.0).await?;
    assert_eq!(
        polled(addrs[other]).await?,
        0.0,
        "the other instance stood by"
    );

    // SIGKILL: no release. The other takes over once the lease expires.
    let before = polled(addrs[other]).await?;
    children[leader].start_kill()?;
    let _ = children[leader].wait().await;
    let killed = std::time::Instant::now();
    while polled(addrs[other]).await? == before {
        assert!(
            killed.elapsed() < Duration::from_millis(2 * INTERVAL_MS),
            "no takeover within two intervals"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();

    // The killed instance comes back, on a new port: it stands by, and unchanged data is not
    // announced again. Whatever the takeover announced is set aside first: a flush is answered
    // after every message the server had sent this client, so all of it is buffered by then.
    tokio::time::timeout(common::WAIT, client.flush()).await??;
    while notices.next().now_or_never().is_some() {}
    let (restarted, restarted_addr, _restarted_logs) =
        common::spawn_and_wait_for_addr(&mut command(), LISTENING).await?;
    children[leader] = restarted;
    addrs[leader] = restarted_addr;
    // Counted events, not a quiet spell: three cycles of the restarted instance, and two
    // more polls of the holder, each of which would have announced a repeat had it made one.
    let holder_before = cycles(addrs[other]).await?.0;
    cycles_past(addrs[leader], 0.0, 3.0).await?;
    cycles_past(addrs[other], holder_before, 2.0).await?;
    assert_eq!(
        polled(addrs[leader]).await?,
        0.0,
        "the restarted instance stands by"
    );
    // A cycle counts only once its announcement is acknowledged, and the server sent the
    // notice to this client before that: after a flush, a repeat would be here.
    tokio::time::timeout(common::WAIT, client.flush()).await??;
    let repeat = notices.next().now_or_never();
    assert!(
        repeat.is_none(),
        "unchanged data was announced again: {repeat:?}"
    );
    println!("takeover {takeover:?} after SIGKILL");
    for mut c in children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    h.sim.stop().await;
    Ok(())
}

/// TLS to NATS: with the CA configured a node connects and serves; without it, it gets nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl").args(args).output()?;
        ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=topcoins test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ])?;
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path("ext.cnf"),
        "-out",
        &path("server.pem"),
    ])?;

    let (cert, key) = (path("server.pem"), path("server.key"));
    let h =
        Harness::start_with_server(COINS, &["--tls", "--tlscert", &cert, "--tlskey", &key]).await?;
    let tls = topcoins_bus::NatsAuth {
        tls_ca: Some(dir.path().join("ca.pem")),
        ..Default::default()
    };
    let untrusting = h
        .start_api_with_auth(topcoins_bus::NatsAuth::default())
        .await?;
    let price = h.start_price_with_auth(tls.clone());
    let ranking = h.start_ranking_with_auth(tls.clone());
    let trusting = h.start_api_with_auth(tls).await?;
    h.ready(&trusting, "/").await?;
    assert_eq!(h.get(&untrusting.url("/readyz")).await?.status(), 503);
    for c in [
        trusting.component,
        untrusting.component,
        price,
        ranking,
        h.sim,
    ] {
        c.stop().await;
    }
    Ok(())
}

/// Short limits for the connection tests: a slow head is cut off after `HEADER`, an idle
/// connection only after `KEEPALIVE`.
const HEADER: Duration = Duration::from_millis(300);
const KEEPALIVE: Duration = Duration::from_secs(3);

fn short_timeouts() -> topcoins_api::ApiConfig {
    topcoins_api::ApiConfig {
        request_timeout: HEADER,
        keepalive_timeout: KEEPALIVE,
        ..Default::default()
    }
}

/// Reads one response from `stream` (its head and its `content-length` bytes of body) and
/// returns its status line, within a bounded time.
async fn read_response(stream: &mut tokio::net::TcpStream) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .context("no content-length")?
                    .trim()
                    .parse()?;
                if got.len() >= end + 4 + length {
                    return Ok::<_, anyhow::Error>(head.lines().next().unwrap_or("").to_owned());
                }
            }
            let n = stream.read(&mut buf).await?;
            ensure!(
                n > 0,
                "connection closed without response after {} bytes",
                got.len()
            );
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await?
}

/// How long until the server closes `stream` (a read returns end of file or an error),
/// waiting at most `limit`; `None` if it is still open then.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(limit, stream.read(&mut buf)).await;
    match read {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        // Bytes (hyper's `408`, say) and then the close.
        Ok(Ok(_)) => tokio::time::timeout(limit, stream.read(&mut buf))
            .await
            .ok()
            .map(|_| started.elapsed()),
        Err(_) => None,
    }
}

/// A client that starts a request and stalls is disconnected after the header timeout — on
/// a fresh connection and on one that served a request and was idle before — although the
/// keep-alive timeout is ten times longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_off_after_the_header_timeout() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start(COINS).await?;
    let node = h.start_api_with(short_timeouts()).await?;
    let partial = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

    let mut fresh = tokio::net::TcpStream::connect(node.addr).await?;
    fresh.write_all(partial).await?;
    let cut = closed_within(&mut fresh, Duration::from_secs(5)).await;
    let cut = cut.context("stalled request on a fresh connection still open after 5 s")?;
    assert!(cut < Duration::from_secs(2), "cut off after {cut:?}");

    let mut reused = tokio::net::TcpStream::connect(node.addr).await?;
    reused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    assert!(read_response(&mut reused).await?.contains(" 200"));
    tokio::time::sleep(2 * HEADER).await;
    reused.write_all(partial).await?;
    let cut = closed_within(&mut reused, Duration::from_secs(5)).await;
    let cut = cut.context("stalled request on a reused connection still open after 5 s")?;
    assert!(
        cut >= HEADER - Duration::from_millis(50) && cut < Duration::from_secs(2),
        "cut off {cut:?} after its first byte"
    );

    // A normal request on a new connection is unaffected.
    assert_eq!(h.get(&node.url("/healthz")).await?.status(), 200);
    for c in [node.component, h.sim] {
        c.stop().await;
    }
    Ok(())
}

/// A keep-alive connection idle for longer than the header timeout still serves its next
/// request; one idle past the keep-alive timeout is closed, and not much later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout_until_the_keepalive_timeout() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start(COINS).await?;
    let node = h.start_api_with(short_timeouts()).await?;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(node.addr).await?;
    stream.write_all(request).await?;
    assert!(read_response(&mut stream).await?.contains(" 200"));

    // Idle for over three header timeouts: the connection must still be open...
    assert_eq!(
        closed_within(&mut stream, 3 * HEADER).await,
        None,
        "idle connection closed at the header timeout"
    );
    // ...and serve the next request on it.
    stream.write_all(request).await?;
    assert!(read_response(&mut stream).await?.contains(" 200"));

    // Then left idle, it is closed once the keep-alive timeout has passed.
    let closed = closed_within(&mut stream, KEEPALIVE + Duration::from_secs(3)).await;
    let closed = closed.context("idle connection still open well past the keep-alive timeout")?;
    assert!(
        closed >= KEEPALIVE - Duration::from_millis(100),
        "closed after {closed:?}, before the keep-alive timeout {KEEPALIVE:?}"
    );
    for c in [node.component, h.sim] {
        c.stop().await;
    }
    Ok(())
}
