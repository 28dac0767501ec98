//! `topcoins alerts`: users' alert rules evaluated on every new value of a metric, the
//! decisions committed to an outbox in the database, and delivered at least once.
//!
//! - `engine`: the rules, their state and the trailing windows; evaluation ([`Engine`]).
//! - `window`: one metric's samples with running sums ([`window::Series`]).
//! - `deliver`: the outbox's due messages sent on their channels, on the Standard Webhooks
//!   retry schedule ([`deliver::Deliverer`]).
//! - `sign`: Standard Webhooks signatures.
//! - `metrics`: [`AlertsMetrics`].
//!
//! **Values.** Exchange metrics (`kraken:btc-usd:volume`) come from every poll of every
//! exchange: its hash notices and its still-current notices, one sample per poll, as the
//! recorder's records. Coin prices (`coin:BTC:price`) come from each new price snapshot (the
//! coin the symbol names, as the API serves it). The windows are kept in memory for the
//! metrics that rules watch, and at start (and for a metric a new rule watches) read back
//! from the database: the records of an exchange metric, the `1m` candles' closes of a coin.
//!
//! **Never lost.** An evaluation's decisions (the rules' states, the alerts, one message per
//! channel) are one transaction; delivery only reads what is committed. While the database is
//! down the decisions wait in memory and are committed when it is back.

pub mod deliver;
pub mod engine;
pub mod metrics;
pub mod sign;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use prometheus::Registry;
use topcoins_bus::{NatsConfig, SnapshotStore, subscribe_polls};
use topcoins_history::{
    AlertStore, CandleStore, DatabaseUrl, Decision, Interval, Range, RecordRange, RecordStore,
    Store,
};
use topcoins_runtime::{Backoff, retry_until_shutdown};
use topcoins_schemas::alert::RULES_CHANGED_SUBJECT;
use topcoins_schemas::ticker::{TICKER_KINDS, decode_tickers};
use topcoins_schemas::{Kind, MetricKind, PriceSnapshot, Snapshot as _, SnapshotHash};

pub use deliver::Deliverer;
pub use engine::Engine;
pub use metrics::AlertsMetrics;

/// The prefix of coin price metrics: `coin:<SYMBOL>:price`.
pub const COIN_PREFIX: &str = "coin:";
pub const COIN_SUFFIX: &str = ":price";

/// The settings of `topcoins alerts`.
#[derive(Debug, Clone, clap::Args)]
pub struct AlertsConfig {
    /// The SMTP server alert e-mails go through: `smtp://user:password@host:587?tls=required`
    /// (STARTTLS), `smtps://user:password@host:465` (TLS), or `smtp://host:25` (plain, for a
    /// local relay). Without it an e-mail attempt fails at once, saying so.
    #[arg(long = "smtp-url", env = "TOPCOINS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of alert e-mails.
    #[arg(
        long = "smtp-from",
        env = "TOPCOINS_SMTP_FROM",
        default_value = "topcoins <alerts@localhost>"
    )]
    pub smtp_from: String,
    /// How long one delivery attempt may take.
    #[arg(long = "delivery-timeout", env = "TOPCOINS_ALERTS_DELIVERY_TIMEOUT", default_value = "10s", value_parser = humantime_duration)]
    pub delivery_timeout: Duration,
    /// How often the rules are read again (besides each change announced by an API node).
    #[arg(long = "rules-refresh", env = "TOPCOINS_ALERTS_RULES_REFRESH", default_value = "30s", value_parser = humantime_duration)]
    pub rules_refresh: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            smtp_from: "topcoins <alerts@localhost>".to_owned(),
            delivery_timeout: Duration::from_secs(10),
            rules_refresh: Duration::from_secs(30),
        }
    }
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let ms = topcoins_schemas::alert::parse_duration_ms(s)
        .ok_or_else(|| format!("{s:?} is not a duration such as 10s, 5m or 1h"))?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TOPCOINS_SMTP_URL: {0}")]
    Smtp(String),
    #[error("TOPCOINS_SMTP_FROM {0:?} is not a mailbox (name <address> or address)")]
    From(String),
    #[error("HTTP client: {0}")]
    Http(String),
}

const OPEN_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AlertsConfig {
    /// The SMTP transport the settings name, if any.
    pub fn smtp(&self) -> Result<Option<deliver::Smtp>, AlertsError> {
        let Some(url) = self.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| AlertsError::Smtp(e.to_string()))?
            .timeout(Some(self.delivery_timeout))
            .build();
        let from = self
            .smtp_from
            .parse()
            .map_err(|_| AlertsError::From(self.smtp_from.clone()))?;
        Ok(Some(deliver::Smtp { transport, from }))
    }
}

/// Runs the alerts process until `shutdown`: waits for the database (and migrates it) and
/// NATS, then evaluates and delivers side by side.
pub async fn run(
    config: AlertsConfig,
    database: DatabaseUrl,
    nats: NatsConfig,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AlertsError> {
    topcoins_upstream::init_tls();
    let metrics = AlertsMetrics::register(&registry)?;
    let smtp = config.smtp()?;
    let http = reqwest::Client::builder()
        .timeout(config.delivery_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("topcoins-alerts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AlertsError::Http(e.to_string()))?;
    let mut shutdown = Box::pin(shutdown);
    let Some(store) = retry_until_shutdown("database", OPEN_BACKOFF, &mut shutdown, || async {
        let store = Store::open(&database).await?;
        store.migrate().await?;
        Ok::<_, topcoins_history::Error>(store)
    })
    .await
    else {
        return Ok(());
    };
    let store = Arc::new(store);
    let (client, _link) = topcoins_bus::connect(&nats).await?;
    let Some(snapshots) =
        SnapshotStore::open_when_ready(&client, nats.stream_replicas, &mut shutdown).await
    else {
        return Ok(());
    };
    tracing::info!(%database, "alerts: database and NATS ready");
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let deliverer = Deliverer {
        store: store.clone(),
        http,
        nats: client.clone(),
        smtp,
        metrics: metrics.clone(),
        timeout: config.delivery_timeout,
    };
    let evaluator = Evaluator {
        store: store.clone(),
        snapshots,
        client: client.clone(),
        metrics,
        wake: wake.clone(),
        refresh: config.rules_refresh,
    };
    let work = async {
        tokio::join!(
            evaluator.run(wait_for(stopped.clone())),
            deliverer.run(wake.clone(), wait_for(stopped.clone())),
        )
    };
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => {}
        _ = &mut shutdown => {
            let _ = stop.send(true);
            work.await;
        }
    }
    topcoins_bus::close(&client).await;
    Ok(())
}

async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The kinds whose values rules can watch.
pub fn watched_kinds() -> Vec<Kind> {
    TICKER_KINDS.iter().copied().chain([Kind::PRICES]).collect()
}

/// The evaluation side: notices in, decisions committed.
struct Evaluator {
    store: Arc<Store>,
    snapshots: SnapshotStore,
    client: async_nats::Client,
    metrics: AlertsMetrics,
    wake: Arc<tokio::sync::Notify>,
    refresh: Duration,
}

/// A snapshot's values, decoded once per hash.
pub enum Values {
    Tickers(&'static str, Vec<topcoins_schemas::PairTicker>),
    Prices(PriceSnapshot),
}

impl Evaluator {
    async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut engine = Engine::default();
        let kinds = watched_kinds();
        let Some(mut polls) =
            retry_until_shutdown("alerts notices", OPEN_BACKOFF, &mut shutdown, || {
                subscribe_polls(&self.client, &kinds)
            })
            .await
        else {
            return;
        };
        let Some(mut changed) =
            retry_until_shutdown("alert rule changes", OPEN_BACKOFF, &mut shutdown, || {
                self.client.subscribe(RULES_CHANGED_SUBJECT)
            })
            .await
        else {
            return;
        };
        // Rules first (subscribed already, so no notice between is missed).
        while !self.reload(&mut engine).await {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let mut refresh = tokio::time::interval(self.refresh);
        refresh.tick().await;
        let mut held: HashMap<Kind, (SnapshotHash, Arc<Values>)> = HashMap::new();
        // Decisions not committed yet (the database away), oldest first.
        let mut uncommitted: Vec<Decision> = Vec::new();
        loop {
            let received = tokio::select! {
                _ = &mut shutdown => {
                    // Decisions still waiting for the database get one last try.
                    self.commit(&mut engine, &mut uncommitted, Vec::new()).await;
                    if !uncommitted.is_empty() {
                        tracing::error!(decisions = uncommitted.len(), "alerts: stopping with decisions the database did not take; their alerts are lost");
                    }
                    return;
                }
                r = polls.next() => r,
                Some(_) = changed.next() => {
                    self.reload(&mut engine).await;
                    continue;
                }
                _ = refresh.tick() => {
                    self.reload(&mut engine).await;
                    self.commit(&mut engine, &mut uncommitted, Vec::new()).await;
                    continue;
                }
            };
            let Some(received) = received else { return };
            let received = match received {
                Ok(r) => r,
                Err(e) => {
                    self.metrics
                        .rejected
                        .with_label_values(&["bad_notice"])
                        .inc();
                    tracing::warn!(error = %e, "alerts: not a notice; ignored");
                    continue;
                }
            };
            if engine.rule_count() == 0 {
                continue;
            }
            let hash = received.notice.hash;
            let values = match held.get(&received.kind) {
                Some((h, v)) if *h == hash => v.clone(),
                _ => match self.values(received.kind, hash).await {
                    Some(v) => {
                        let v = Arc::new(v);
                        held.insert(received.kind, (hash, v.clone()));
                        v
                    }
                    None => continue,
                },
            };
            let time = i64::try_from(received.notice.as_of.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or(i64::MAX);
            let started = std::time::Instant::now();
            let events = evaluate(&mut engine, &values, time);
            self.metrics
                .evaluation
                .observe(started.elapsed().as_secs_f64());
            self.commit(&mut engine, &mut uncommitted, events).await;
        }
    }

    /// The values of snapshot `hash` of `kind`, or `None` (counted) if it cannot be had.
    async fn values(&self, kind: Kind, hash: SnapshotHash) -> Option<Values> {
        let bytes = match self.snapshots.fetch(hash).await {
            Ok(b) => b,
            Err(e) => {
                self.metrics
                    .rejected
                    .with_label_values(&["missing_snapshot"])
                    .inc();
                tracing::warn!(%kind, %hash, error = %e, "alerts: snapshot not fetched; poll skipped");
                return None;
            }
        };
        if kind == Kind::PRICES {
            return match PriceSnapshot::decode(&bytes) {
                Ok(p) => Some(Values::Prices(p)),
                Err(e) => {
                    self.metrics
                        .rejected
                        .with_label_values(&["bad_snapshot"])
                        .inc();
                    tracing::warn!(%hash, error = %e, "alerts: price snapshot does not decode");
                    None
                }
            };
        }
        match decode_tickers(kind, &bytes)? {
            Ok((exchange, tickers)) => Some(Values::Tickers(exchange, tickers)),
            Err(e) => {
                self.metrics
                    .rejected
                    .with_label_values(&["bad_snapshot"])
                    .inc();
                tracing::warn!(%kind, %hash, error = %e, "alerts: ticker snapshot does not decode");
                None
            }
        }
    }

    /// Reads the rules and their states again; reads the windows of metrics new to the rules
    /// from the database. `false` if the database could not be read.
    async fn reload(&self, engine: &mut Engine) -> bool {
        let rules = match self.store.all_rules().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.db_errors.with_label_values(&["rules"]).inc();
                tracing::warn!(error = %e, "alerts: rules not read; keeping the ones held");
                return false;
            }
        };
        let states = match self.store.alert_states().await {
            Ok(s) => s,
            Err(e) => {
                self.metrics.db_errors.with_label_values(&["states"]).inc();
                tracing::warn!(error = %e, "alerts: rule states not read; keeping the rules held");
                return false;
            }
        };
        let new = engine.set_rules(rules, states);
        self.metrics
            .rules
            .set(i64::try_from(engine.rule_count()).unwrap_or(i64::MAX));
        let now = now_ms();
        for metric in new {
            let keep = engine.keep_ms(&metric);
            match self.earlier(&metric, now - keep, now).await {
                Ok(samples) => {
                    if !samples.is_empty() {
                        tracing::info!(%metric, samples = samples.len(), "alerts: window read from the database");
                    }
                    engine.seed(&metric, samples);
                }
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["window"]).inc();
                    tracing::warn!(%metric, error = %e, "alerts: window not read; it fills from now");
                    engine.seed(&metric, []);
                }
            }
        }
        true
    }

    /// `metric`'s samples in `from..=to` from the database, oldest first.
    async fn earlier(
        &self,
        metric: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>, topcoins_history::Error> {
        let mut out = Vec::new();
        if let Some(symbol) = coin_symbol(metric) {
            let mut range = Range {
                symbol: symbol.to_owned(),
                interval: Interval::M1,
                from,
                to,
                limit: topcoins_history::MAX_LIMIT,
                cursor: None,
            };
            loop {
                let page = self.store.range(&range).await?;
                out.extend(
                    page.candles
                        .iter()
                        .filter_map(|c| c.price.as_ref().map(|p| (p.close_time, p.close))),
                );
                match page.next_cursor {
                    Some(c) => range.cursor = Some(c),
                    None => break,
                }
            }
            return Ok(out);
        }
        let mut range = RecordRange {
            metric: metric.to_owned(),
            from,
            to,
            limit: topcoins_history::MAX_LIMIT,
            cursor: None,
        };
        loop {
            let page = self.store.records(&range).await?;
            out.extend(page.records);
            match page.next_cursor {
                Some(c) => range.cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Tells the API nodes' live streams of a stored alert (`/v1/stream`'s `alert` event) on
    /// `topcoins.v1.stream.alerts.<user_id>`, whatever the rule's channel. Best effort: the
    /// alert is in the database already, and `GET /v1/alerts` lists it.
    async fn announce_live(&self, a: &topcoins_history::Alert) {
        let body = serde_json::json!({
            "id": a.id,
            "rule_id": a.rule_id,
            "metric": a.metric,
            "kind": a.kind,
            "time": a.time,
            "value": a.value,
            "average": a.average,
        });
        let subject = topcoins_bus::subjects::stream_alerts_subject(&a.user_id);
        if let Err(e) = self.client.publish(subject, body.to_string().into()).await {
            tracing::debug!(error = %e, "alerts: live announcement not sent");
        }
    }

    /// Commits what is waiting and `events`' decision (with the states changed since the last
    /// commit). What cannot be committed now waits for the next try.
    async fn commit(
        &self,
        engine: &mut Engine,
        uncommitted: &mut Vec<Decision>,
        events: Vec<engine::Event>,
    ) {
        let states = engine.take_dirty();
        if !events.is_empty() || !states.is_empty() {
            uncommitted.push(engine.decide(&events, states, now_ms()));
        }
        while let Some(decision) = uncommitted.first() {
            match self.store.commit_alerts(decision.clone()).await {
                Ok(stored) => {
                    for a in &decision.alerts {
                        if stored.contains(&a.message_id) {
                            self.metrics
                                .fired
                                .with_label_values(&[a.kind.as_str()])
                                .inc();
                            self.announce_live(a).await;
                        }
                    }
                    uncommitted.remove(0);
                    self.wake.notify_one();
                }
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["commit"]).inc();
                    tracing::warn!(error = %e, waiting = uncommitted.len(), "alerts: decisions not committed; kept for the next try");
                    return;
                }
            }
        }
    }
}

/// `BTC` of `coin:BTC:price`.
pub fn coin_symbol(metric: &str) -> Option<&str> {
    metric
        .strip_prefix(COIN_PREFIX)?
        .strip_suffix(COIN_SUFFIX)
        .filter(|s| !s.is_empty())
}

/// Every watched metric's new value in `values`, evaluated (what one notice costs; public
/// for the benchmark).
pub fn evaluate(engine: &mut Engine, values: &Values, time: i64) -> Vec<engine::Event> {
    let mut out = Vec::new();
    match values {
        Values::Tickers(exchange, tickers) => {
            let mut id = String::new();
            for t in tickers {
                for kind in MetricKind::ALL {
                    id.clear();
                    id.push_str(exchange);
                    id.push(':');
                    id.push_str(&t.pair);
                    id.push(':');
                    id.push_str(kind.as_str());
                    // One lookup: a metric no rule watches is passed over there.
                    engine.observe(&id, time, t.value(kind), &mut out);
                }
            }
        }
        Values::Prices(prices) => {
            let coins: Vec<String> = engine
                .metrics()
                .filter(|m| coin_symbol(m).is_some())
                .map(str::to_owned)
                .collect();
            if coins.is_empty() {
                return out;
            }
            let by_symbol = prices.by_symbol();
            for metric in coins {
                let symbol = coin_symbol(&metric).unwrap_or_default().to_uppercase();
                if let Some(coin) = by_symbol.get(&symbol) {
                    engine.observe(&metric, time, coin.price_usd, &mut out);
                }
            }
        }
    }
    out
}
