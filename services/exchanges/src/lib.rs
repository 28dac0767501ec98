//! Exchange tickers (issue 12): `topcoins exchanges` polls each enabled exchange's public,
//! keyless ticker API for the tracked pairs and announces one snapshot per exchange whenever
//! its figures change, on the path prices and ranking take.
//!
//! - [`pair`]: [`Pair`] and each exchange's name mapping (Kraken `XXBTZUSD`, Binance
//!   `BTCUSDT`, Coinbase `BTC-USD`).
//! - [`ticker`]: [`Ticker`], [`Rejection`] and [`Parsed`], what every parser returns, and the
//!   number checks they share.
//! - [`kraken`], [`binance`], [`coinbase`]: one ticker parser per exchange.
//! - [`markets`]: each exchange's pairs endpoint (what can be tracked, and its name for a pair).
//! - [`rank`]: each metric's standard deviation over 24 h and its rank among its kind.
//! - [`client`]: the HTTP calls ([`client::ExchangeApi`]), pacing and back-off per exchange.
//! - [`source`]: the [`topcoins_poller::Source`]s of one exchange's tracked tickers and of its
//!   list of pairs (two kinds, two pollers).
//! - this file: [`ExchangesConfig`] (`TOPCOINS_EXCHANGES`, `TOPCOINS_PAIRS`, …) and [`run`].
//!
//! Errors are [`topcoins_upstream::UpstreamError`], as for every other provider: a body that
//! breaks the overall shape is `Malformed` with its JSON path, an error body is `Provider` (or
//! `RateLimited`, `Status`). One bad pair is a [`Rejection`] beside the good ones, never an
//! error for the whole body.

pub mod binance;
pub mod client;
pub mod coinbase;
mod feed;
pub mod kraken;
pub mod markets;
pub mod pair;
pub mod rank;
pub mod source;
pub mod ticker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
pub use pair::Pair;
pub use ticker::{Parsed, Rejection, Ticker, Window};
use topcoins_poller::{RunError, ServiceContext, serve};
use topcoins_schemas::ticker::EXCHANGES;
use topcoins_upstream::Upstream;

use crate::client::{
    BINANCE_DEFAULT_URL, BinanceApi, COINBASE_DEFAULT_URL, CoinbaseApi, ExchangeApi,
    KRAKEN_DEFAULT_URL, KrakenApi,
};
use crate::rank::Samples;
use crate::source::{MarketsSource, RankSource, TickerSource};

/// The polling interval against a real exchange: the trackers this replaces polled every
/// minute, and a minute is well inside every exchange's public limits.
pub const PROVIDER_INTERVAL: Duration = Duration::from_secs(60);
/// Against any other base URL (the simulator, a proxy).
pub const SIM_INTERVAL: Duration = Duration::from_secs(10);

/// The pairs tracked when `TOPCOINS_PAIRS` is not given: two per exchange.
pub const DEFAULT_PAIRS: &str = "kraken:btc-usd,kraken:eth-usd,coinbase:btc-usd,coinbase:eth-usd,binance:btc-usdt,binance:eth-usdt";

#[derive(Debug, Clone, clap::Args)]
pub struct ExchangesConfig {
    /// Exchanges polled, comma-separated: kraken, coinbase, binance.
    #[arg(
        long = "exchanges",
        env = "TOPCOINS_EXCHANGES",
        default_value = "kraken",
        value_delimiter = ','
    )]
    pub exchanges: Vec<String>,
    /// Pairs tracked from the start, `exchange:base-quote`, comma-separated (users add more
    /// with their watchlists) [default: btc and eth against usd (usdt on Binance) on each
    /// enabled exchange].
    #[arg(long = "pairs", env = "TOPCOINS_PAIRS", value_delimiter = ',')]
    pub pairs: Vec<String>,
    /// How often each exchange is polled [default: 60s against a real exchange, 10s against another URL].
    #[arg(long = "exchange-interval", env = "TOPCOINS_EXCHANGE_INTERVAL", value_parser = humantime::parse_duration)]
    pub exchange_interval: Option<Duration>,
    /// How often each exchange's list of pairs is read again.
    #[arg(long = "markets-refresh", env = "TOPCOINS_MARKETS_REFRESH", default_value = "1h", value_parser = humantime::parse_duration)]
    pub markets_refresh: Duration,
    /// Kraken base URL.
    #[arg(long = "kraken-url", env = "TOPCOINS_KRAKEN_URL", default_value = KRAKEN_DEFAULT_URL)]
    pub kraken_url: String,
    /// Coinbase Exchange base URL.
    #[arg(long = "coinbase-url", env = "TOPCOINS_COINBASE_URL", default_value = COINBASE_DEFAULT_URL)]
    pub coinbase_url: String,
    /// Binance base URL.
    #[arg(long = "binance-url", env = "TOPCOINS_BINANCE_URL", default_value = BINANCE_DEFAULT_URL)]
    pub binance_url: String,
    /// The database the recorder keeps the metrics' records in: when set, a metric's ranks
    /// start from its records of the last 24 h rather than from nothing (`exchanges`:
    /// `--database-url` / `TOPCOINS_DATABASE_URL`; `up`: its own database).
    #[arg(skip)]
    pub database: Option<topcoins_history::DatabaseUrl>,
}

/// A setting that cannot be used, said before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown exchange {0:?} in TOPCOINS_EXCHANGES (known: kraken, coinbase, binance)")]
    UnknownExchange(String),
    #[error("TOPCOINS_PAIRS entry {0:?} is not exchange:base-quote (e.g. kraken:btc-usd)")]
    BadPair(String),
    #[error(
        "TOPCOINS_PAIRS entry {0:?} names an exchange that is not enabled in TOPCOINS_EXCHANGES"
    )]
    NotEnabled(String),
}

impl ExchangesConfig {
    /// The enabled exchanges, each once, in the order given.
    pub fn enabled(&self) -> Result<Vec<&'static str>, ConfigError> {
        let mut out = Vec::new();
        for name in &self.exchanges {
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let id = EXCHANGES
                .into_iter()
                .find(|e| *e == name)
                .ok_or_else(|| ConfigError::UnknownExchange(name.clone()))?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The pairs tracked on each enabled exchange, sorted, each once. Without
    /// `TOPCOINS_PAIRS`, [`DEFAULT_PAIRS`] of the enabled exchanges.
    pub fn tracked(&self) -> Result<Vec<(&'static str, Vec<Pair>)>, ConfigError> {
        let enabled = self.enabled()?;
        let given = !self.pairs.iter().all(|p| p.trim().is_empty());
        let entries: Vec<String> = if given {
            self.pairs.clone()
        } else {
            DEFAULT_PAIRS.split(',').map(str::to_owned).collect()
        };
        let mut tracked: Vec<(&'static str, Vec<Pair>)> =
            enabled.iter().map(|e| (*e, Vec::new())).collect();
        for entry in entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (exchange, pair) = entry
                .split_once(':')
                .ok_or_else(|| ConfigError::BadPair(entry.to_owned()))?;
            let exchange = exchange.trim().to_ascii_lowercase();
            let pair =
                Pair::parse(pair.trim()).ok_or_else(|| ConfigError::BadPair(entry.to_owned()))?;
            if !EXCHANGES.contains(&exchange.as_str()) {
                return Err(ConfigError::UnknownExchange(exchange));
            }
            match tracked.iter_mut().find(|(e, _)| *e == exchange) {
                Some((_, pairs)) => pairs.push(pair),
                // The defaults name every exchange; only a given entry must be enabled.
                None if given => return Err(ConfigError::NotEnabled(entry.to_owned())),
                None => {}
            }
        }
        for (_, pairs) in &mut tracked {
            pairs.sort();
            pairs.dedup();
        }
        Ok(tracked)
    }

    fn url(&self, exchange: &str) -> (&str, &'static str) {
        match exchange {
            "kraken" => (&self.kraken_url, KRAKEN_DEFAULT_URL),
            "coinbase" => (&self.coinbase_url, COINBASE_DEFAULT_URL),
            _ => (&self.binance_url, BINANCE_DEFAULT_URL),
        }
    }

    fn is_real(&self, exchange: &str) -> bool {
        let (url, real) = self.url(exchange);
        url.trim_end_matches('/') == real
    }

    /// The polling interval of an exchange.
    pub fn interval(&self, exchange: &str) -> Duration {
        self.exchange_interval.unwrap_or(if self.is_real(exchange) {
            PROVIDER_INTERVAL
        } else {
            SIM_INTERVAL
        })
    }

    /// Points every exchange whose base URL was left at the real one at the simulator at
    /// `sim_url` (the exchanges need no key, so with a simulator given they all use it unless
    /// told otherwise). Returns whether any was.
    pub fn use_sim(&mut self, sim_url: &str) -> bool {
        let mut used = false;
        for (url, real) in [
            (&mut self.kraken_url, KRAKEN_DEFAULT_URL),
            (&mut self.coinbase_url, COINBASE_DEFAULT_URL),
            (&mut self.binance_url, BINANCE_DEFAULT_URL),
        ] {
            if url.trim_end_matches('/') == real {
                *url = sim_url.to_owned();
                used = true;
            }
        }
        used
    }
}

type Service<'a> = Pin<Box<dyn Future<Output = Result<(), RunError>> + Send + 'a>>;

fn service<'a, A: ExchangeApi>(
    api: A,
    tracked: Arc<Vec<Pair>>,
    watched: tokio::sync::watch::Receiver<Vec<String>>,
    config: &ExchangesConfig,
    context: &ServiceContext,
    shutdown: impl Future<Output = ()> + Send + 'a,
) -> Service<'a> {
    let exchange = <A::Exchange as topcoins_schemas::Exchange>::ID;
    let api = Arc::new(api);
    let (refresh, metrics) = (config.markets_refresh, context.upstream_metrics.clone());
    let shutdown = shutdown.boxed().shared();
    let markets = {
        let api = api.clone();
        serve(
            context.clone(),
            move |_| MarketsSource::new(api.clone()),
            refresh,
            shutdown.clone(),
        )
    };
    let make_source = move |_| {
        TickerSource::new(api.clone(), tracked.clone(), refresh, metrics.clone())
            .with_watched(watched.clone())
    };
    let tickers = serve(
        context.clone(),
        make_source,
        config.interval(exchange),
        shutdown,
    );
    // The tickers and the pairs list: two pollers, two kinds, one exchange.
    Box::pin(async move {
        futures::try_join!(tickers, markets)?;
        Ok(())
    })
}

/// Follows the tracked-set bucket ([`topcoins_bus::Tracked`]) until `shutdown`, sending each
/// exchange's watched pairs to its poller. Waits for NATS like the pollers do; while the
/// bucket cannot be read, the pollers keep the pairs they had.
async fn follow_tracked(
    context: ServiceContext,
    senders: Vec<(&'static str, tokio::sync::watch::Sender<Vec<String>>)>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let mut shutdown = Box::pin(shutdown);
    let (client, _link) = topcoins_bus::connect(&context.nats).await?;
    let backoff =
        topcoins_runtime::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let Some(tracked) =
        topcoins_runtime::retry_until_shutdown("tracked bucket", backoff, &mut shutdown, || {
            topcoins_bus::Tracked::open(&client, context.nats.stream_replicas)
        })
        .await
    else {
        return Ok(());
    };
    let forwards = senders.into_iter().map(|(exchange, tx)| {
        let mut rx = tracked.follow(exchange);
        async move {
            while rx.changed().await.is_ok() {
                let pairs = rx.borrow_and_update().clone();
                tracing::info!(exchange, watched = ?pairs, "watched pairs changed; polled from the next cycle");
                tx.send_replace(pairs);
            }
        }
    });
    tokio::select! {
        _ = futures::future::join_all(forwards) => {}
        _ = &mut shutdown => {}
    }
    Ok(())
}

/// Runs one poller per enabled exchange until `shutdown`; the first that fails ends them all.
pub async fn run(
    config: ExchangesConfig,
    context: ServiceContext,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let tracked = config
        .tracked()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let shutdown = shutdown.boxed().shared();
    let samples = Arc::new(std::sync::Mutex::new(Samples::default()));
    let mut services: Vec<Service<'_>> = Vec::new();
    let mut senders = Vec::new();
    let mut fed = Vec::new();
    // The ranks, from every exchange's samples, as often as the most frequent poll.
    let rank_interval = tracked
        .iter()
        .map(|(e, _)| config.interval(e))
        .min()
        .unwrap_or(PROVIDER_INTERVAL);
    if !tracked.is_empty() {
        let samples = samples.clone();
        services.push(Box::pin(serve(
            context.clone(),
            move |_| RankSource::new(samples.clone()),
            rank_interval,
            shutdown.clone(),
        )));
    }
    for (exchange, pairs) in tracked {
        let (url, _) = config.url(exchange);
        tracing::info!(
            exchange,
            url,
            pairs = ?pairs.iter().map(Pair::as_str).collect::<Vec<_>>(),
            interval = %humantime::format_duration(config.interval(exchange)),
            nats = %context.nats.redacted_url(),
            "exchange poller starting"
        );
        let http = Upstream::new(
            exchange,
            context.http.clone(),
            context.upstream_metrics.clone(),
        );
        let stop = shutdown.clone();
        let (tx, w) = tokio::sync::watch::channel(Vec::new());
        senders.push((exchange, tx));
        let pairs = Arc::new(pairs);
        fed.push(feed::Fed {
            exchange,
            kind: topcoins_schemas::ticker::TICKER_KINDS[EXCHANGES
                .iter()
                .position(|e| *e == exchange)
                .expect("a known exchange")],
            configured: pairs.clone(),
            watched: w.clone(),
        });
        services.push(match exchange {
            "kraken" => service(KrakenApi::new(http, url), pairs, w, &config, &context, stop),
            "coinbase" => service(
                CoinbaseApi::new(http, url),
                pairs,
                w,
                &config,
                &context,
                stop,
            ),
            _ => service(
                BinanceApi::new(http, url),
                pairs,
                w,
                &config,
                &context,
                stop,
            ),
        });
    }
    if !fed.is_empty() {
        services.push(Box::pin(feed::feed(
            context.clone(),
            fed,
            samples.clone(),
            config.database.clone(),
            shutdown.clone(),
        )));
    }
    if !senders.is_empty() {
        services.push(Box::pin(follow_tracked(
            context.clone(),
            senders,
            shutdown.clone(),
        )));
    }
    futures::future::try_join_all(services).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(exchanges: &str, pairs: &str) -> ExchangesConfig {
        ExchangesConfig {
            exchanges: exchanges.split(',').map(str::to_owned).collect(),
            pairs: pairs.split(',').map(str::to_owned).collect(),
            exchange_interval: None,
            markets_refresh: source::MARKETS_REFRESH,
            kraken_url: KRAKEN_DEFAULT_URL.into(),
            coinbase_url: COINBASE_DEFAULT_URL.into(),
            binance_url: BINANCE_DEFAULT_URL.into(),
            database: None,
        }
    }

    fn names(t: &[(&str, Vec<Pair>)]) -> Vec<(String, Vec<String>)> {
        t.iter()
            .map(|(e, p)| (e.to_string(), p.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn tracked_pairs_per_exchange() {
        let c = config("kraken", "");
        assert_eq!(
            names(&c.tracked().unwrap()),
            [("kraken".into(), vec!["btc-usd".into(), "eth-usd".into()])]
        );
        let c = config(
            "binance, Kraken,kraken",
            "kraken:SOL-usd,binance:btc-usdt,kraken:sol-usd",
        );
        assert_eq!(
            names(&c.tracked().unwrap()),
            [
                ("binance".into(), vec!["btc-usdt".into()]),
                ("kraken".into(), vec!["sol-usd".into()])
            ]
        );
        assert_eq!(
            config("kraken", "coinbase:btc-usd").tracked(),
            Err(ConfigError::NotEnabled("coinbase:btc-usd".into()))
        );
        assert_eq!(
            config("kraken", "kraken-btc-usd").tracked(),
            Err(ConfigError::BadPair("kraken-btc-usd".into()))
        );
        assert_eq!(
            config("kraken", "kraken:btcusd").tracked(),
            Err(ConfigError::BadPair("kraken:btcusd".into()))
        );
        assert_eq!(
            config("bitfinex", "").tracked(),
            Err(ConfigError::UnknownExchange("bitfinex".into()))
        );
    }

    #[test]
    fn intervals_and_the_simulator() {
        let mut c = config("kraken,coinbase", "");
        assert_eq!(c.interval("kraken"), PROVIDER_INTERVAL);
        c.coinbase_url = "http://proxy:1".into();
        assert!(c.use_sim("http://sim:9000"));
        assert_eq!(c.kraken_url, "http://sim:9000");
        assert_eq!(c.coinbase_url, "http://proxy:1");
        assert_eq!(c.interval("kraken"), SIM_INTERVAL);
        // Within the public limits at the default: Coinbase's two calls a pair every minute.
        assert!(PROVIDER_INTERVAL >= Duration::from_secs(60));
    }
}
