//! The HTTP side of each exchange: its pairs endpoint and its ticker endpoint, through the
//! shared resilient client ([`Upstream`]: timeouts, retries of what is transient,
//! `Retry-After`), every call counted as a call spent.
//!
//! - **Kraken**: one `Ticker` call for up to [`KRAKEN_PAIRS_PER_CALL`] pairs (its query names,
//!   from `AssetPairs`: an unknown name fails the whole call, so only listed pairs are asked).
//! - **Coinbase Exchange**: two calls a product (`ticker`, `stats`), spaced to stay under the
//!   public limit of 10 requests a second ([`COINBASE_SPACING`]); a product that fails is a
//!   rejection of that pair, not of the others.
//! - **Binance**: one `ticker/24hr?symbols=[…]` call for up to [`BINANCE_SYMBOLS_PER_CALL`]
//!   symbols; the weight used (`X-MBX-USED-WEIGHT-1M`) is published as what is left of the
//!   minute's 6,000; a 429 or 418 with `Retry-After` stops every call until that time has
//!   passed (Binance bans an IP that keeps calling after a 429).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use topcoins_schemas::{Binance, Coinbase, Exchange, Kraken};
use topcoins_upstream::http::Reply;
use topcoins_upstream::{Upstream, UpstreamError, UpstreamErrorKind};

use crate::markets::{self, Market};
use crate::ticker::{Parsed, Rejection};

/// What the ticker source needs of an exchange.
pub trait ExchangeApi: Send + Sync + 'static {
    type Exchange: Exchange;

    /// The tradable pairs, from the exchange's pairs endpoint.
    fn markets(&self) -> impl Future<Output = Result<Vec<Market>, UpstreamError>> + Send;

    /// The tickers of these markets (all listed by [`ExchangeApi::markets`]).
    fn tickers(
        &self,
        markets: &[Market],
    ) -> impl Future<Output = Result<Parsed, UpstreamError>> + Send;
}

pub const KRAKEN_DEFAULT_URL: &str = "https://api.kraken.com";
pub const COINBASE_DEFAULT_URL: &str = "https://api.exchange.coinbase.com";
pub const BINANCE_DEFAULT_URL: &str = "https://api.binance.com";

/// Pairs per Kraken `Ticker` call (the query string stays short).
pub const KRAKEN_PAIRS_PER_CALL: usize = 50;
/// Symbols per Binance `ticker/24hr` call: 1–20 symbols weigh 2, 21–100 weigh 40.
pub const BINANCE_SYMBOLS_PER_CALL: usize = 100;
/// Binance's request-weight allowance a minute (`exchangeInfo`'s `REQUEST_WEIGHT`).
pub const BINANCE_WEIGHT_PER_MINUTE: i64 = 6_000;
/// Time between two Coinbase calls: 10 requests a second is the public limit.
pub const COINBASE_SPACING: Duration = Duration::from_millis(110);

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn spent(http: &Upstream) {
    http.metrics()
        .credits
        .with_label_values(&[http.provider()])
        .inc();
}

/// Kraken's public REST API.
#[derive(Clone)]
pub struct KrakenApi {
    http: Upstream,
    base: String,
}

impl KrakenApi {
    pub fn new(http: Upstream, url: &str) -> Self {
        Self {
            http,
            base: base(url),
        }
    }
}

impl ExchangeApi for KrakenApi {
    type Exchange = Kraken;

    async fn markets(&self) -> Result<Vec<Market>, UpstreamError> {
        let url = format!("{}/0/public/AssetPairs", self.base);
        let reply = self.http.get(&url, &[], &[]).await;
        spent(&self.http);
        let reply = reply?;
        markets::kraken(reply.status, &reply.body)
    }

    async fn tickers(&self, markets: &[Market]) -> Result<Parsed, UpstreamError> {
        let url = format!("{}/0/public/Ticker", self.base);
        let mut parsed = Parsed::default();
        for chunk in markets.chunks(KRAKEN_PAIRS_PER_CALL) {
            let names: Vec<&str> = chunk.iter().map(|m| m.name.as_str()).collect();
            let reply = self.http.get(&url, &[("pair", names.join(","))], &[]).await;
            spent(&self.http);
            let reply = reply?;
            let part = crate::kraken::parse(reply.status, &reply.body)?;
            parsed.tickers.extend(part.tickers);
            parsed.rejected.extend(part.rejected);
        }
        Ok(parsed)
    }
}

/// Coinbase Exchange's public REST API.
pub struct CoinbaseApi {
    http: Upstream,
    base: String,
    spacing: Duration,
    last_call: tokio::sync::Mutex<Option<Instant>>,
}

impl CoinbaseApi {
    pub fn new(http: Upstream, url: &str) -> Self {
        Self::with_spacing(http, url, COINBASE_SPACING)
    }

    pub fn with_spacing(http: Upstream, url: &str, spacing: Duration) -> Self {
        Self {
            http,
            base: base(url),
            spacing,
            last_call: tokio::sync::Mutex::new(None),
        }
    }

    /// One call, at least `spacing` after the one before.
    async fn get(&self, url: &str) -> Result<Reply, UpstreamError> {
        {
            let mut last = self.last_call.lock().await;
            if let Some(at) = *last {
                tokio::time::sleep_until((at + self.spacing).into()).await;
            }
            *last = Some(Instant::now());
        }
        let reply = self.http.get(url, &[], &[]).await;
        spent(&self.http);
        reply
    }

    async fn reply(&self, url: &str) -> Result<(u16, bytes::Bytes), UpstreamError> {
        let r = self.get(url).await?;
        Ok((r.status, r.body))
    }
}

impl ExchangeApi for CoinbaseApi {
    type Exchange = Coinbase;

    async fn markets(&self) -> Result<Vec<Market>, UpstreamError> {
        let reply = self.get(&format!("{}/products", self.base)).await?;
        markets::coinbase(reply.status, &reply.body)
    }

    async fn tickers(&self, markets: &[Market]) -> Result<Parsed, UpstreamError> {
        let mut parsed = Parsed::default();
        let mut failed: Option<UpstreamError> = None;
        for m in markets {
            let product = &m.name;
            let one = async {
                let ticker = self
                    .reply(&format!("{}/products/{product}/ticker", self.base))
                    .await?;
                let stats = self
                    .reply(&format!("{}/products/{product}/stats", self.base))
                    .await?;
                crate::coinbase::parse(product, (ticker.0, &ticker.1), (stats.0, &stats.1))
            };
            match one.await {
                Ok(part) => {
                    parsed.tickers.extend(part.tickers);
                    parsed.rejected.extend(part.rejected);
                }
                // One product's failure is that pair's rejection; the others go on.
                Err(e) => {
                    parsed
                        .rejected
                        .push(Rejection::new(product, e.reason(), e.message.clone()));
                    failed = Some(e);
                }
            }
        }
        match failed {
            // Nothing came back: the exchange is failing, not one pair.
            Some(e) if parsed.tickers.is_empty() => Err(e),
            _ => Ok(parsed),
        }
    }
}

/// Binance's public REST API (spot).
pub struct BinanceApi {
    http: Upstream,
    base: String,
    /// No call before this (a 429 or 418's `Retry-After`).
    banned_until: Mutex<Option<Instant>>,
}

impl BinanceApi {
    pub fn new(http: Upstream, url: &str) -> Self {
        Self {
            http,
            base: base(url),
            banned_until: Mutex::new(None),
        }
    }

    /// One call, unless a ban is running; reads the weight used and any new ban.
    async fn get(&self, url: &str, query: &[(&str, String)]) -> Result<Reply, UpstreamError> {
        let until = *self.banned_until.lock().expect("not poisoned");
        if let Some(until) = until {
            let now = Instant::now();
            if now < until {
                return Err(UpstreamError::new(
                    crate::binance::PROVIDER,
                    UpstreamErrorKind::RateLimited {
                        retry_after: Some(until - now),
                    },
                    format!(
                        "backing off for {} more after a 429/418",
                        humantime::format_duration(Duration::from_secs((until - now).as_secs()))
                    ),
                ));
            }
        }
        let reply = self.http.get(url, query, &[]).await;
        spent(&self.http);
        match reply {
            Ok(reply) => {
                if let Some(used) = reply
                    .headers
                    .get("x-mbx-used-weight-1m")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
                {
                    self.http
                        .metrics()
                        .calls_left
                        .with_label_values(&[crate::binance::PROVIDER, "minute"])
                        .set(BINANCE_WEIGHT_PER_MINUTE - used);
                }
                if matches!(reply.status, 418 | 429) {
                    let wait = reply
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(60), Duration::from_secs);
                    self.ban(wait);
                }
                Ok(reply)
            }
            Err(e) => {
                // A 429 the retries could not outwait.
                if let UpstreamErrorKind::RateLimited { retry_after } = &e.kind {
                    self.ban(retry_after.unwrap_or(Duration::from_secs(60)));
                }
                Err(e)
            }
        }
    }

    fn ban(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.banned_until.lock().expect("not poisoned");
        *held = Some(held.map_or(until, |h| h.max(until)));
        tracing::warn!(provider = crate::binance::PROVIDER, wait = %humantime::format_duration(wait), "rate limited: no calls until the wait is over");
    }
}

impl ExchangeApi for BinanceApi {
    type Exchange = Binance;

    async fn markets(&self) -> Result<Vec<Market>, UpstreamError> {
        let reply = self
            .get(&format!("{}/api/v3/exchangeInfo", self.base), &[])
            .await?;
        markets::binance(reply.status, &reply.body)
    }

    async fn tickers(&self, markets: &[Market]) -> Result<Parsed, UpstreamError> {
        let url = format!("{}/api/v3/ticker/24hr", self.base);
        let mut parsed = Parsed::default();
        for chunk in markets.chunks(BINANCE_SYMBOLS_PER_CALL) {
            let symbols: Vec<String> = chunk.iter().map(|m| format!("{:?}", m.name)).collect();
            let query = [("symbols", format!("[{}]", symbols.join(",")))];
            let reply = self.get(&url, &query).await?;
            let part = crate::binance::parse(reply.status, &reply.body)?;
            parsed.tickers.extend(part.tickers);
            parsed.rejected.extend(part.rejected);
        }
        Ok(parsed)
    }
}
