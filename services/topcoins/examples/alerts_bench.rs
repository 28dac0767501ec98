//! Benchmarks of the alerts process (issue 13), run by `bench/alerts.sh`:
//!
//! - `alerts_bench evaluate <metrics> <cycles>`: one rule per metric (`above_average`, 1 h),
//!   each metric's window full (360 samples, a poll every 10 s); each cycle is one snapshot of
//!   every metric through the evaluator (metric ids built from the tickers, every rule
//!   evaluated). Prints the cycle time's p50, p99 and max. Target: <= 10 ms at 10,000.
//! - `alerts_bench latency <rules> <iterations>` (with `NATS_URL` of a JetStream server): the
//!   alerts process in this process on a SQLite database, `<rules>` rules (`price_above` on
//!   as many metrics of one exchange), and a webhook receiver; each iteration publishes a
//!   snapshot of every metric in which one more crosses its threshold, and times the
//!   publication to the webhook's arrival. Prints p50, p99 and max. Target: p99 <= 500 ms
//!   with 1,000 rules.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use topcoins_alerts::{Engine, Values, evaluate};
use topcoins_history::{
    AccountStore as _, AlertStore as _, ApiKey, CandleStore as _, Channel, DatabaseUrl, Rule,
    Store, User,
};
use topcoins_schemas::ticker::{Binance, PairTicker, TICKER_KINDS, TickerSnapshot, TickerWindow};
use topcoins_schemas::{HashNotice, Snapshot as _};

fn ticker(i: usize, price: f64) -> PairTicker {
    PairTicker {
        pair: format!("c{i}-usdt").into(),
        price,
        high: price * 1.1,
        low: price * 0.9,
        change_pct: 1.0,
        change_abs: 1.0,
        volume: 1000.0 + i as f64,
        volume_quote: 1000.0 * price,
        window: TickerWindow::Rolling24h,
        change_window: TickerWindow::Rolling24h,
    }
}

fn channel(user: &str) -> Channel {
    Channel {
        id: "chn_bench".into(),
        user_id: user.into(),
        kind: "webhook".into(),
        target: String::new(),
        secret: topcoins_schemas::alert::secret_of(&[7; 32]),
        previous_secret: None,
        previous_until: None,
        disabled: None,
        created: 0,
    }
}

fn percentiles(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {}",
        at(0.5),
        at(0.99),
        ms[ms.len() - 1],
        ms.len()
    )
}

fn evaluate_bench(metrics: usize, cycles: usize) {
    let pairs = metrics.div_ceil(7);
    let kinds = topcoins_schemas::MetricKind::ALL;
    let mut rules = Vec::new();
    for p in 0..pairs {
        for k in kinds {
            if rules.len() == metrics {
                break;
            }
            rules.push((
                Rule {
                    id: format!("rul_{p:06}_{}", k.as_str()),
                    user_id: "usr_bench".into(),
                    metric: format!("binance:c{p}-usdt:{}", k.as_str()),
                    condition: r#"{"type":"above_average","factor":3,"window":"1h"}"#.into(),
                    channel_id: "chn_bench".into(),
                    created: 0,
                },
                channel("usr_bench"),
            ));
        }
    }
    let mut engine = Engine::default();
    let ids: Vec<String> = rules.iter().map(|(r, _)| r.metric.clone()).collect();
    engine.set_rules(rules, Vec::new());
    const STEP: i64 = 10_000;
    // Each window full of the value the cycles bring (give or take 4 %): quiet cycles, as
    // most are, but for one pair in a hundred that spikes in each cycle.
    for (n, id) in ids.iter().enumerate() {
        let steady = ticker(n / 7, 100.0).value(kinds[n % 7]);
        engine.seed(
            id,
            (0..360).map(|i| (i * STEP, steady * (1.0 + (i % 5) as f64 * 0.01))),
        );
    }
    let mut times = Vec::with_capacity(cycles);
    let mut fired = 0;
    for c in 0..cycles {
        let tickers: Vec<PairTicker> = (0..pairs)
            .map(|p| {
                let spike = p % 100 == c % 100;
                ticker(
                    p,
                    if spike {
                        1000.0
                    } else {
                        100.0 + (c % 5) as f64
                    },
                )
            })
            .collect();
        let values = Values::Tickers("binance", tickers);
        let at = (360 + c as i64) * STEP;
        let started = Instant::now();
        fired += evaluate(&mut engine, &values, at).len();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "evaluation of {} metrics ({} rules) per cycle: {} (alerts fired: {fired})",
        ids.len(),
        engine.rule_count(),
        percentiles(times)
    );
}

async fn latency_bench(rules: usize, iterations: usize) -> Result<()> {
    topcoins_upstream::init_tls();
    let nats_url = std::env::var("NATS_URL").context("NATS_URL")?;
    let dir = tempfile::tempdir()?;
    let database = DatabaseUrl::Sqlite(dir.path().join("alerts.db"));
    // The receiver: when each webhook arrived, by the metric it names.
    let arrived: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let app = {
        let arrived = arrived.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let arrived = arrived.clone();
                async move {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let metric = v["data"]["metric"].as_str().unwrap_or("").to_owned();
                    arrived.lock().unwrap().push((metric, Instant::now()));
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    {
        let store = Store::open(&database).await?;
        store.migrate().await?;
        store
            .create_user(
                User {
                    id: "usr_bench".into(),
                    name: "bench".into(),
                    created: 0,
                },
                ApiKey {
                    id: "key_bench".into(),
                    user_id: "usr_bench".into(),
                    prefix: "tck_".into(),
                    hash: [1; 32],
                    created: 0,
                    last_used: None,
                    revoked: None,
                },
            )
            .await?;
        for i in 0..rules {
            let mut c = channel("usr_bench");
            c.target = hook.clone();
            store
                .create_rule(
                    Rule {
                        id: format!("rul_{i:06}"),
                        user_id: "usr_bench".into(),
                        metric: format!("binance:c{i}-usdt:price"),
                        condition: r#"{"type":"price_above","threshold":1000}"#.into(),
                        channel_id: String::new(),
                        created: 0,
                    },
                    c,
                )
                .await?;
        }
    }
    let nats = topcoins_bus::NatsConfig {
        url: nats_url,
        name: "alerts-bench".into(),
        stream_replicas: 1,
        ..Default::default()
    };
    let registry = prometheus::Registry::new();
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let alerts = {
        let (database, nats, registry, shutdown) = (
            database.clone(),
            nats.clone(),
            registry.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            topcoins_alerts::run(Default::default(), database, nats, registry, async move {
                shutdown.notified().await
            })
            .await
        })
    };
    let (client, _) = topcoins_bus::connect(&nats).await?;
    let store = topcoins_bus::SnapshotStore::open(client).await?;
    let kind = TICKER_KINDS[2];
    store.ensure_kinds(&TICKER_KINDS).await?;
    // Wait for the rules to be loaded.
    let rules_gauge = || {
        registry
            .gather()
            .iter()
            .find(|m| m.name() == "topcoins_alert_rules")
            .map(|m| m.get_metric()[0].get_gauge().get_value())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while rules_gauge() < rules as f64 {
        anyhow::ensure!(Instant::now() < deadline, "rules not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times = Vec::new();
    let mut at = time::OffsetDateTime::now_utc();
    for it in 0..iterations.min(rules) {
        // Every metric below its threshold but `it`, and those before it (already fired).
        let tickers: Vec<PairTicker> = (0..rules)
            .map(|i| {
                ticker(
                    i,
                    if i <= it {
                        2000.0
                    } else {
                        10.0 + (it % 3) as f64
                    },
                )
            })
            .collect();
        let (bytes, hash) = TickerSnapshot::<Binance>::new(tickers)?.encode();
        at += Duration::from_secs(1);
        let started = Instant::now();
        store.put_kind(kind, hash, &bytes).await?;
        store
            .announce(
                kind,
                &HashNotice {
                    hash,
                    as_of: at,
                    count: rules as u64,
                    source: "bench".into(),
                    follows: None,
                },
                &Default::default(),
            )
            .await?;
        let want = format!("binance:c{it}-usdt:price");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, t)) = arrived.lock().unwrap().iter().find(|(m, _)| *m == want) {
                times.push(t.duration_since(started).as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no webhook for {want}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!(
        "value arrival -> webhook received, {rules} rules: {}",
        percentiles(times)
    );
    shutdown.notify_waiters();
    let _ = tokio::time::timeout(Duration::from_secs(10), alerts).await;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("evaluate") => {
            evaluate_bench(n(2, 10_000), n(3, 200));
            Ok(())
        }
        Some("latency") => {
            tokio::runtime::Runtime::new()?.block_on(latency_bench(n(2, 1000), n(3, 200)))
        }
        _ => anyhow::bail!(
            "usage: alerts_bench evaluate <metrics> <cycles> | latency <rules> <iterations>"
        ),
    }
}
