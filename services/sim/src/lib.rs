//! `topcoins sim`: a simulated crypto market behind the real providers' HTTP formats.
//!
//! It is the default data source when no API keys are set, and the test harness's upstream.
//!
//! - [`market`]: the coin universe and how it moves.
//! - [`providers`]: the universe rendered as CoinMarketCap, CryptoCompare and CoinGecko
//!   responses, with their parameter rules and error bodies.
//! - [`exchanges`]: the same universe as Kraken, Coinbase Exchange and Binance tickers and
//!   pair lists, with their error bodies.
//! - this file: configuration, the HTTP routes, and [`run`].
//!
//! Exchange paths: Kraken `GET /0/public/Ticker?pair=XBTUSD,ETHUSD` and `/0/public/AssetPairs`;
//! Coinbase Exchange `GET /products/{id}/ticker`, `/products/{id}/stats` and `/products`;
//! Binance `GET /api/v3/ticker/24hr?symbol=BTCUSDT` (or `?symbols=["BTCUSDT","ETHUSDT"]`) and
//! `/api/v3/exchangeInfo`, with `X-MBX-USED-WEIGHT-1M`.
//!
//! Besides the providers' paths the simulator answers `POST /sim/tick` (move the market one
//! step now; how tests make things change), `GET /sim/status`, and `POST`/`DELETE
//! /sim/faults` (see [`faults`]).

pub mod exchanges;
pub mod faults;
pub mod history;
pub mod market;
pub mod providers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::faults::{Endpoint, Fault, FaultRequest, Faults};
use crate::market::Market;
use crate::providers::{CcQuery, CmcQuery, GeckoQuery, ProviderError};

pub const DEFAULT_COINS: usize = 2_000;
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_TICK: &str = "10s";

/// Settings of the simulator.
#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Number of coins in the simulated universe.
    #[arg(long = "sim-coins", env = "TOPCOINS_SIM_COINS", default_value_t = DEFAULT_COINS)]
    pub sim_coins: usize,
    /// Seed of the market's random walk; the same seed gives the same market.
    #[arg(long = "sim-seed", env = "TOPCOINS_SIM_SEED", default_value_t = DEFAULT_SEED)]
    pub sim_seed: u64,
    /// How often the market moves by itself; `0s` moves it only on `POST /sim/tick`.
    #[arg(long = "sim-tick", env = "TOPCOINS_SIM_TICK", default_value = DEFAULT_TICK, value_parser = humantime::parse_duration)]
    pub sim_tick: Duration,
    /// Pairs each simulated exchange lists (default Kraken 60, Coinbase 40, Binance 100; at
    /// most one per coin): more for benchmarks of many tracked metrics.
    #[arg(long = "sim-pairs", env = "TOPCOINS_SIM_PAIRS")]
    pub sim_pairs: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            sim_coins: DEFAULT_COINS,
            sim_seed: DEFAULT_SEED,
            sim_tick: humantime::parse_duration(DEFAULT_TICK).expect("valid default"),
            sim_pairs: None,
        }
    }
}

#[derive(Clone)]
struct Sim {
    market: Arc<RwLock<Market>>,
    faults: Arc<Faults>,
    /// Requests served per provider endpoint, for `GET /sim/status` (how benchmarks count
    /// upstream calls).
    requests: prometheus::IntCounterVec,
    registry: prometheus::Registry,
    seed: u64,
    /// Binance's request weight used this minute: `(minute since the epoch, weight)`.
    binance_weight: Arc<Mutex<(i64, u64)>>,
}

fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Coinmarketcap => "coinmarketcap",
        Endpoint::Cryptocompare => "cryptocompare",
        Endpoint::Coingecko => "coingecko",
        Endpoint::Kraken => "kraken",
        Endpoint::Coinbase => "coinbase",
        Endpoint::Binance => "binance",
    }
}

/// Every endpoint, in the order `GET /sim/status` lists them.
const ENDPOINTS: [Endpoint; 6] = [
    Endpoint::Coinmarketcap,
    Endpoint::Cryptocompare,
    Endpoint::Coingecko,
    Endpoint::Kraken,
    Endpoint::Coinbase,
    Endpoint::Binance,
];

impl Sim {
    fn step(&self) -> u64 {
        let mut market = self.market.write().unwrap_or_else(|e| e.into_inner());
        market.step();
        market.step
    }

    /// Adds `weight` to Binance's request weight of the current minute; returns the total.
    fn binance_weigh(&self, weight: u64) -> u64 {
        let minute = time::OffsetDateTime::now_utc()
            .unix_timestamp()
            .div_euclid(60);
        let mut used = self
            .binance_weight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if used.0 != minute {
            *used = (minute, 0);
        }
        used.1 += weight;
        used.1
    }
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

/// Answers one provider request: the fault in force for the endpoint, if any, else `render`.
async fn answer(
    sim: &Sim,
    endpoint: Endpoint,
    render: impl FnOnce(&Market) -> Result<serde_json::Value, ProviderError>,
) -> Response {
    sim.requests
        .with_label_values(&[endpoint_name(endpoint)])
        .inc();
    let fault = sim.faults.take(endpoint);
    match &fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (content_type, body) = faults::status_body(endpoint, *status);
            let mut response = bytes_response(code, content_type, body);
            if let Some(secs) = retry_after {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    secs.to_string().parse().expect("digits"),
                );
            }
            return response;
        }
        Some(Fault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        _ => {}
    }
    let result = {
        let market = sim.market.read().unwrap_or_else(|e| e.into_inner());
        render(&market)
    };
    match result {
        Ok(body) => {
            let (content_type, bytes) = match &fault {
                Some(f) => faults::apply(endpoint, f, body),
                None => ("application/json", serde_json::to_vec(&body).expect("json")),
            };
            bytes_response(StatusCode::OK, content_type, bytes)
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, Json(e.body)).into_response()
        }
    }
}

async fn cmc_listings(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let q = CmcQuery {
        start: q.get("start").cloned(),
        limit: q.get("limit").cloned(),
        convert: q.get("convert").cloned(),
    };
    answer(&sim, Endpoint::Coinmarketcap, |m| {
        providers::cmc_listings(m, &q)
    })
    .await
}

async fn cc_toplist(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Response {
    let q = CcQuery {
        limit: q.get("limit").cloned(),
        page: q.get("page").cloned(),
        tsym: q.get("tsym").cloned(),
    };
    answer(&sim, Endpoint::Cryptocompare, |m| {
        Ok(providers::cc_toplist(m, &q))
    })
    .await
}

/// `/data/v2/histoday` and `/data/v2/histohour`: CryptoCompare's history, consistent with the
/// market (see [`history`]); faults set for `cryptocompare` apply here too.
async fn cc_histo(
    sim: Sim,
    resolution: history::Resolution,
    q: HashMap<String, String>,
) -> Response {
    let q = history::HistoQuery {
        fsym: q.get("fsym").cloned(),
        tsym: q.get("tsym").cloned(),
        limit: q.get("limit").cloned(),
        to_ts: q.get("toTs").cloned(),
    };
    let seed = sim.seed;
    answer(&sim, Endpoint::Cryptocompare, |m| {
        Ok(history::histo(m, seed, resolution, &q))
    })
    .await
}

async fn cc_histoday(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Response {
    cc_histo(sim, history::Resolution::Day, q).await
}

async fn cc_histohour(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    cc_histo(sim, history::Resolution::Hour, q).await
}

async fn gecko_markets(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let q = GeckoQuery {
        vs_currency: q.get("vs_currency").cloned(),
        per_page: q.get("per_page").cloned(),
        page: q.get("page").cloned(),
    };
    answer(&sim, Endpoint::Coingecko, |m| {
        providers::gecko_markets(m, &q)
    })
    .await
}

async fn kraken_ticker(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let pair = q.get("pair").cloned();
    answer(&sim, Endpoint::Kraken, |m| {
        exchanges::kraken_ticker(m, pair.as_deref())
    })
    .await
}

async fn kraken_asset_pairs(State(sim): State<Sim>) -> Response {
    answer(&sim, Endpoint::Kraken, |m| {
        Ok(exchanges::kraken_asset_pairs(m))
    })
    .await
}

async fn coinbase_ticker(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    answer(&sim, Endpoint::Coinbase, |m| {
        exchanges::coinbase_ticker(m, &id)
    })
    .await
}

async fn coinbase_stats(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    answer(&sim, Endpoint::Coinbase, |m| {
        exchanges::coinbase_stats(m, &id)
    })
    .await
}

async fn coinbase_products(State(sim): State<Sim>) -> Response {
    answer(&sim, Endpoint::Coinbase, |m| {
        Ok(exchanges::coinbase_products(m))
    })
    .await
}

/// Sets Binance's `X-MBX-USED-WEIGHT-1M` on a response, after charging `weight`.
fn binance_weighed(sim: &Sim, weight: u64, mut response: Response) -> Response {
    let used = sim.binance_weigh(weight);
    response.headers_mut().insert(
        "x-mbx-used-weight-1m",
        used.to_string().parse().expect("digits"),
    );
    response
}

async fn binance_ticker(
    State(sim): State<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let selection = exchanges::BinanceSelection::parse(
        q.get("symbol").map(String::as_str),
        q.get("symbols").map(String::as_str),
    );
    let weight = selection.as_ref().map_or(1, |s| s.weight());
    let response = answer(&sim, Endpoint::Binance, |m| {
        exchanges::binance_ticker(m, &selection?)
    })
    .await;
    binance_weighed(&sim, weight, response)
}

async fn binance_exchange_info(State(sim): State<Sim>) -> Response {
    let response = answer(&sim, Endpoint::Binance, |m| {
        Ok(exchanges::binance_exchange_info(m))
    })
    .await;
    binance_weighed(&sim, exchanges::BINANCE_EXCHANGE_INFO_WEIGHT, response)
}

async fn set_fault(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(request) => {
            tracing::info!(endpoint = ?request.endpoint, fault = ?request.fault, times = ?request.times, "fault set");
            sim.faults.set(request);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn tick(State(sim): State<Sim>) -> Response {
    Json(json!({ "step": sim.step() })).into_response()
}

async fn status(State(sim): State<Sim>) -> Response {
    let market = sim.market.read().unwrap_or_else(|e| e.into_inner());
    let requests: serde_json::Map<String, serde_json::Value> = ENDPOINTS
        .iter()
        .map(|&e| {
            let name = endpoint_name(e);
            (
                name.to_owned(),
                json!(sim.requests.with_label_values(&[name]).get()),
            )
        })
        .collect();
    Json(json!({
        "coins": market.coins.len(),
        "step": market.step,
        "seed": sim.seed,
        "requests": requests,
    }))
    .into_response()
}

async fn metrics(State(sim): State<Sim>) -> Response {
    let (content_type, body) = topcoins_runtime::metrics::render(&sim.registry);
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found() -> Response {
    // CryptoCompare's answer for an unknown path, HTTP 200 included, is the most surprising
    // of the three; the others get a plain 404.
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such path in the simulator"})),
    )
        .into_response()
}

fn router(sim: Sim) -> Router {
    Router::new()
        .route("/v1/cryptocurrency/listings/latest", get(cmc_listings))
        .route("/data/top/totalvolfull", get(cc_toplist))
        .route("/data/v2/histoday", get(cc_histoday))
        .route("/data/v2/histohour", get(cc_histohour))
        .route("/api/v3/coins/markets", get(gecko_markets))
        .route("/0/public/Ticker", get(kraken_ticker))
        .route("/0/public/AssetPairs", get(kraken_asset_pairs))
        .route("/products", get(coinbase_products))
        .route("/products/{id}/ticker", get(coinbase_ticker))
        .route("/products/{id}/stats", get(coinbase_stats))
        .route("/api/v3/ticker/24hr", get(binance_ticker))
        .route("/api/v3/exchangeInfo", get(binance_exchange_info))
        .route("/sim/tick", post(tick))
        .route("/sim/status", get(status))
        .route("/metrics", get(metrics))
        .route("/sim/faults", post(set_fault).delete(clear_faults))
        .fallback(not_found)
        .with_state(sim)
}

/// Serves the simulator on `listener` until `shutdown` completes, with a registry of its own.
pub async fn run(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_in(config, prometheus::Registry::new(), listener, shutdown).await
}

/// Serves the simulator, its metrics registered into `registry` (under `topcoins up`, the
/// process's one registry, so the API node's `/metrics` has the simulator's series too).
pub async fn run_in(
    config: SimConfig,
    registry: prometheus::Registry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let requests = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "topcoins_sim_requests_total",
            "Provider requests served by the simulator",
        ),
        &["endpoint"],
    )
    .expect("valid metric");
    if let Err(e) = registry.register(Box::new(requests.clone())) {
        return Err(std::io::Error::other(format!("simulator metrics: {e}")));
    }
    let mut market = Market::new(config.sim_coins, config.sim_seed);
    market.listed = config.sim_pairs;
    let sim = Sim {
        market: Arc::new(RwLock::new(market)),
        faults: Arc::new(Faults::default()),
        requests,
        registry,
        seed: config.sim_seed,
        binance_weight: Arc::new(Mutex::new((0, 0))),
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        coins = config.sim_coins,
        seed = config.sim_seed,
        tick = %humantime::format_duration(config.sim_tick),
        "simulator listening"
    );
    let ticker = (!config.sim_tick.is_zero()).then(|| {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(config.sim_tick);
            every.tick().await;
            loop {
                every.tick().await;
                sim.step();
            }
        })
    });
    let served = axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(t) = ticker {
        t.abort();
    }
    served
}

#[cfg(test)]
mod tests {
    //! The exchanges' bodies through the HTTP routes, read by the real parsers
    //! (`topcoins_exchanges`), against the market they came from.

    use axum::body::Body;
    use axum::http::Request;
    use topcoins_exchanges::{Pair, Parsed, binance, coinbase, kraken, pair};
    use topcoins_upstream::UpstreamErrorKind;
    use tower::ServiceExt;

    use super::*;

    fn sim(coins: usize, seed: u64, steps: usize) -> Sim {
        let mut market = Market::new(coins, seed);
        for _ in 0..steps {
            market.step();
        }
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("requests", "requests"),
            &["endpoint"],
        )
        .unwrap();
        Sim {
            market: Arc::new(RwLock::new(market)),
            faults: Arc::new(Faults::default()),
            requests,
            registry: prometheus::Registry::new(),
            seed,
            binance_weight: Arc::new(Mutex::new((0, 0))),
        }
    }

    struct Reply {
        status: u16,
        headers: axum::http::HeaderMap,
        body: Vec<u8>,
    }

    async fn call(sim: &Sim, method: &str, uri: &str, body: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = router(sim.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(sim: &Sim, uri: &str) -> Reply {
        call(sim, "GET", uri, "").await
    }

    fn coin<'a>(market: &'a Market, symbol: &str) -> &'a market::Coin {
        market.coins.iter().find(|c| c.symbol == symbol).unwrap()
    }

    /// Equal but for the rounding to the exchange's decimals (Binance: always 8).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs() + 1e-8
    }

    /// Every ticker of `parsed` is consistent with the market: its price is the coin's USD
    /// price over `quote_usd`, its open the price before the coin's 24 h change, the price
    /// within the day's range, the volumes not negative.
    fn check_against_market(market: &Market, parsed: &Parsed, quote_usd: f64) {
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        for t in &parsed.tickers {
            let symbol = t.pair.base().to_ascii_uppercase();
            let c = coin(market, &symbol);
            let want = c.price / quote_usd;
            assert!(close(t.price, want), "{}: {} vs {want}", t.pair, t.price);
            let open = t.open_24h.unwrap();
            let want_open = want / (1.0 + c.change_24h_pct / 100.0);
            assert!(
                close(open, want_open),
                "{}: open {open} vs {want_open}",
                t.pair
            );
            assert!(
                t.low_24h <= t.price && t.price <= t.high_24h,
                "{}: {} not in [{}, {}]",
                t.pair,
                t.price,
                t.low_24h,
                t.high_24h
            );
            assert!(t.low_24h <= open && open <= t.high_24h, "{}", t.pair);
            assert!(t.low_24h > 0.0, "{}", t.pair);
            assert!(t.volume > 0.0 && t.volume_quote > 0.0, "{}", t.pair);
            let want_volume = c.volume_24h / c.price;
            assert!(
                t.volume < want_volume && t.volume > want_volume * 0.01,
                "{}: volume {} of {want_volume}",
                t.pair,
                t.volume
            );
        }
    }

    fn pairs(parsed: &Parsed) -> Vec<&str> {
        let mut v: Vec<&str> = parsed.tickers.iter().map(|t| t.pair.as_str()).collect();
        v.sort_unstable();
        v
    }

    #[tokio::test]
    async fn kraken_tickers_parse_into_the_market_prices() {
        let sim = sim(300, 5, 20);
        let r = get(
            &sim,
            "/0/public/Ticker?pair=XBTUSD,ETHUSD,SOLUSD,XDGUSD,XRPUSD",
        )
        .await;
        assert_eq!(r.status, 200);
        let raw: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let mut keys: Vec<&String> = raw["result"].as_object().unwrap().keys().collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["SOLUSD", "XDGUSD", "XETHZUSD", "XXBTZUSD", "XXRPZUSD"]
        );
        let parsed = kraken::parse(r.status, &r.body).unwrap();
        assert_eq!(
            pairs(&parsed),
            ["btc-usd", "doge-usd", "eth-usd", "sol-usd", "xrp-usd"]
        );
        let market = sim.market.read().unwrap();
        check_against_market(&market, &parsed, 1.0);
        // Today's volume is part of the 24 h one.
        for key in keys {
            let v = &raw["result"][key]["v"];
            let f = |i: usize| v[i].as_str().unwrap().parse::<f64>().unwrap();
            assert!(f(0) <= f(1), "{key}");
        }
    }

    #[tokio::test]
    async fn coinbase_tickers_parse_into_the_market_prices() {
        let sim = sim(300, 5, 20);
        for id in ["BTC-USD", "ETH-USD", "DOGE-USD", "USDC-USD"] {
            let t = get(&sim, &format!("/products/{id}/ticker")).await;
            let s = get(&sim, &format!("/products/{id}/stats")).await;
            assert_eq!((t.status, s.status), (200, 200), "{id}");
            let parsed = coinbase::parse(id, (t.status, &t.body), (s.status, &s.body)).unwrap();
            assert_eq!(parsed.tickers.len(), 1, "{id}");
            assert_eq!(
                parsed.tickers[0].pair,
                Pair::parse(&id.to_ascii_lowercase()).unwrap()
            );
            let market = sim.market.read().unwrap();
            check_against_market(&market, &parsed, 1.0);
        }
    }

    #[tokio::test]
    async fn binance_tickers_parse_into_the_market_prices_and_carry_the_weight() {
        let sim = sim(300, 5, 20);
        let usdt = coin(&sim.market.read().unwrap(), "USDT").price;
        assert_ne!(usdt, 1.0, "the walk moved USDT off its peg a little");
        let r = get(
            &sim,
            "/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22,%22DOGEUSDT%22%5D",
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body.starts_with(b"["));
        let parsed = binance::parse(r.status, &r.body).unwrap();
        assert_eq!(pairs(&parsed), ["btc-usdt", "doge-usdt", "eth-usdt"]);
        check_against_market(&sim.market.read().unwrap(), &parsed, usdt);
        let weight = |r: &Reply| -> u64 {
            r.headers["x-mbx-used-weight-1m"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        };
        let first = weight(&r);
        assert!(first >= 2);

        let r = get(&sim, "/api/v3/ticker/24hr?symbol=BTCUSDT").await;
        assert!(r.body.starts_with(b"{"), "one object for ?symbol=");
        let parsed = binance::parse(r.status, &r.body).unwrap();
        assert_eq!(pairs(&parsed), ["btc-usdt"]);
        check_against_market(&sim.market.read().unwrap(), &parsed, usdt);
        let second = weight(&r);
        // Within one minute the weight adds up (a minute boundary in between starts again).
        assert!(second == first + 2 || second == 2, "{first} then {second}");

        let r = get(&sim, "/api/v3/exchangeInfo").await;
        assert_eq!(r.status, 200);
        assert!(r.headers.contains_key("x-mbx-used-weight-1m"));
    }

    /// Every pair each exchange lists parses, under the parsers' own name mapping, as that
    /// coin against the exchange's quote, and the pair lists name the same pairs.
    #[tokio::test]
    async fn every_listed_pair_round_trips_through_the_parsers() {
        for seed in [1, 42, 7777] {
            let sim = sim(2000, seed, 3);
            let market = sim.market.read().unwrap().coins.clone();
            let want = |exchange: exchanges::Exchange| -> Vec<String> {
                let m = sim.market.read().unwrap();
                let mut v: Vec<String> = exchanges::listings(&m, exchange)
                    .iter()
                    .map(|l| {
                        Pair::new(&l.coin.symbol, exchange.quote())
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                v.sort_unstable();
                v
            };
            let owned = |p: Vec<&str>| p.into_iter().map(str::to_owned).collect::<Vec<_>>();

            // Kraken: everything (no `pair`), and the pair list.
            let r = get(&sim, "/0/public/Ticker").await;
            let parsed = kraken::parse(r.status, &r.body).unwrap();
            let kraken_pairs = want(exchanges::Exchange::Kraken);
            assert!(kraken_pairs.len() > 40, "{seed}: {}", kraken_pairs.len());
            assert_eq!(owned(pairs(&parsed)), kraken_pairs, "seed {seed}");
            check_against_market(&sim.market.read().unwrap(), &parsed, 1.0);
            let r = get(&sim, "/0/public/AssetPairs").await;
            let raw: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(raw["error"], serde_json::json!([]));
            let mut listed: Vec<String> = raw["result"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(key, info)| {
                    let by_key = pair::from_kraken(key).unwrap();
                    let altname = info["altname"].as_str().unwrap();
                    assert_eq!(pair::from_kraken(altname), Some(by_key.clone()), "{key}");
                    assert_eq!(pair::kraken_query_name(&by_key), altname, "{key}");
                    by_key.to_string()
                })
                .collect();
            listed.sort_unstable();
            assert_eq!(listed, kraken_pairs);

            // Coinbase: every product's ticker and stats.
            let r = get(&sim, "/products").await;
            let products: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
            let mut listed = Vec::new();
            for p in &products {
                let id = p["id"].as_str().unwrap();
                let t = get(&sim, &format!("/products/{id}/ticker")).await;
                let s = get(&sim, &format!("/products/{id}/stats")).await;
                let parsed = coinbase::parse(id, (t.status, &t.body), (s.status, &s.body)).unwrap();
                check_against_market(&sim.market.read().unwrap(), &parsed, 1.0);
                assert_eq!(pair::coinbase_product_id(&parsed.tickers[0].pair), id);
                listed.push(parsed.tickers[0].pair.to_string());
            }
            listed.sort_unstable();
            assert_eq!(listed, want(exchanges::Exchange::Coinbase), "seed {seed}");

            // Binance: everything, and the symbol list.
            let r = get(&sim, "/api/v3/ticker/24hr").await;
            let parsed = binance::parse(r.status, &r.body).unwrap();
            let binance_pairs = want(exchanges::Exchange::Binance);
            assert_eq!(owned(pairs(&parsed)), binance_pairs, "seed {seed}");
            let usdt = market.iter().find(|c| c.symbol == "USDT").unwrap().price;
            check_against_market(&sim.market.read().unwrap(), &parsed, usdt);
            let r = get(&sim, "/api/v3/exchangeInfo").await;
            let raw: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let mut listed: Vec<String> = raw["symbols"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let symbol = s["symbol"].as_str().unwrap();
                    let p = pair::from_binance(symbol).unwrap();
                    assert_eq!(pair::binance_symbol(&p), symbol);
                    p.to_string()
                })
                .collect();
            listed.sort_unstable();
            assert_eq!(listed, binance_pairs);
        }
    }

    #[tokio::test]
    async fn unknown_pairs_are_the_exchanges_errors() {
        let sim = sim(300, 5, 1);
        for uri in [
            "/0/public/Ticker?pair=FOOUSD",
            "/0/public/Ticker?pair=XBTUSD,FOOUSD",
        ] {
            let r = get(&sim, uri).await;
            assert_eq!(r.status, 200, "Kraken's errors come with HTTP 200");
            assert_eq!(r.body, br#"{"error":["EQuery:Unknown asset pair"]}"#);
            let err = kraken::parse(r.status, &r.body).unwrap_err();
            assert_eq!(err.kind, UpstreamErrorKind::Provider { code: 200 });
            assert!(err.message.contains("EQuery:Unknown asset pair"));
        }

        let ok = get(&sim, "/products/BTC-USD/stats").await;
        for uri in ["/products/FOO-USD/ticker", "/products/FOO-USD/stats"] {
            let r = get(&sim, uri).await;
            assert_eq!(r.status, 404);
            assert_eq!(r.body, br#"{"message":"NotFound"}"#);
            let err =
                coinbase::parse("FOO-USD", (r.status, &r.body), (ok.status, &ok.body)).unwrap_err();
            assert_eq!(err.kind, UpstreamErrorKind::Provider { code: 404 });
            assert!(err.message.contains("NotFound"));
        }

        for uri in [
            "/api/v3/ticker/24hr?symbol=FOOUSDT",
            "/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22,%22FOOUSDT%22%5D",
        ] {
            let r = get(&sim, uri).await;
            assert_eq!(r.status, 400, "{uri}");
            assert_eq!(r.body, br#"{"code":-1121,"msg":"Invalid symbol."}"#);
            assert!(r.headers.contains_key("x-mbx-used-weight-1m"));
            let err = binance::parse(r.status, &r.body).unwrap_err();
            assert_eq!(err.kind, UpstreamErrorKind::Provider { code: -1121 });
            assert!(err.message.contains("Invalid symbol."));
        }
        let r = get(&sim, "/api/v3/ticker/24hr?symbols=BTCUSDT").await;
        assert_eq!(r.status, 400);
        assert_eq!(
            binance::parse(r.status, &r.body).unwrap_err().kind,
            UpstreamErrorKind::Provider { code: -1100 }
        );
    }

    /// The bodies of one call to each exchange (and to CoinGecko), to compare before and
    /// after a fault.
    async fn snapshot(sim: &Sim) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        for uri in [
            "/0/public/Ticker?pair=XBTUSD,ETHUSD",
            "/products/BTC-USD/ticker",
            "/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D",
            "/api/v3/coins/markets?vs_currency=usd&per_page=5",
        ] {
            let r = get(sim, uri).await;
            out.push((r.status, r.body));
        }
        out
    }

    #[tokio::test]
    async fn a_fault_for_one_exchange_changes_only_that_exchange() {
        let sim = sim(300, 5, 3);
        let before = snapshot(&sim).await;
        assert_eq!(before, snapshot(&sim).await, "answers are stable");
        for (i, endpoint) in ["kraken", "coinbase", "binance"].into_iter().enumerate() {
            for fault in [
                r#""fault":"status","status":500"#,
                r#""fault":"nan_price""#,
                r#""fault":"missing_fields""#,
                r#""fault":"html_page""#,
            ] {
                let set = call(
                    &sim,
                    "POST",
                    "/sim/faults",
                    &format!(r#"{{"endpoint":"{endpoint}",{fault}}}"#),
                )
                .await;
                assert_eq!(set.status, 204, "{endpoint} {fault}");
                let after = snapshot(&sim).await;
                for (j, (b, a)) in before.iter().zip(&after).enumerate() {
                    if i == j {
                        assert_ne!(b, a, "{endpoint} {fault} changes {endpoint}");
                    } else {
                        assert_eq!(b, a, "{endpoint} {fault} changes only {endpoint} ({j})");
                    }
                }
                // And the parser sees it.
                let (status, body) = &after[i];
                let outcome = match endpoint {
                    "kraken" => kraken::parse(*status, body),
                    "coinbase" => {
                        let stats = get(&sim, "/products/BTC-USD/stats").await;
                        coinbase::parse("BTC-USD", (*status, body), (stats.status, &stats.body))
                    }
                    _ => binance::parse(*status, body),
                };
                match fault {
                    r#""fault":"nan_price""# => {
                        let parsed = outcome.unwrap();
                        assert_eq!(parsed.rejected[0].reason, "non_finite", "{endpoint}");
                    }
                    r#""fault":"missing_fields""# => {
                        let parsed = outcome.unwrap();
                        assert!(parsed.tickers.is_empty(), "{endpoint}");
                        assert_eq!(parsed.rejected[0].reason, "missing_field", "{endpoint}");
                    }
                    r#""fault":"status","status":500"# => {
                        assert_eq!(*status, 500);
                        assert!(outcome.is_err(), "{endpoint}");
                    }
                    _ => assert!(outcome.is_err(), "{endpoint}"),
                }
                assert_eq!(call(&sim, "DELETE", "/sim/faults", "").await.status, 204);
                assert_eq!(before, snapshot(&sim).await, "cleared");
            }
        }
        let status = get(&sim, "/sim/status").await;
        let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
        for name in ["kraken", "coinbase", "binance"] {
            assert!(status["requests"][name].as_u64().unwrap() > 0, "{name}");
        }
    }

    #[test]
    fn kraken_duplicate_entries_write_a_key_twice() {
        let market = Market::new(50, 1);
        let body = exchanges::kraken_ticker(&market, Some("XBTUSD,ETHUSD")).unwrap();
        let (_, bytes) = faults::apply(Endpoint::Kraken, &Fault::DuplicateEntries, body);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches("\"XETHZUSD\":").count(), 2, "{text}");
        assert_eq!(text.matches("\"XXBTZUSD\":").count(), 1, "{text}");
    }
}
