//! `topcoins sim`: a simulated crypto market behind the real providers' HTTP formats.
//!
//! It is the default data source when no API keys are set, and the test harness's upstream.
//!
//! - [`market`]: the coin universe and how it moves.
//! - [`providers`]: the universe rendered as CoinMarketCap, CryptoCompare and CoinGecko
//!   responses, with their parameter rules and error bodies.
//! - this file: configuration, the HTTP routes, and [`run`].
//!
//! Besides the providers' paths the simulator answers `POST /sim/tick` (move the market one
//! step now; how tests make things change), `GET /sim/status`, and `POST`/`DELETE
//! /sim/faults` (see [`faults`]).

pub mod faults;
pub mod history;
pub mod market;
pub mod providers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Query, State};
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
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            sim_coins: DEFAULT_COINS,
            sim_seed: DEFAULT_SEED,
            sim_tick: humantime::parse_duration(DEFAULT_TICK).expect("valid default"),
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
}

fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Coinmarketcap => "coinmarketcap",
        Endpoint::Cryptocompare => "cryptocompare",
        Endpoint::Coingecko => "coingecko",
    }
}

impl Sim {
    fn step(&self) -> u64 {
        let mut market = self.market.write().unwrap_or_else(|e| e.into_inner());
        market.step();
        market.step
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
    let count = |e| sim.requests.with_label_values(&[endpoint_name(e)]).get();
    Json(json!({
        "coins": market.coins.len(),
        "step": market.step,
        "seed": sim.seed,
        "requests": {
            "coinmarketcap": count(Endpoint::Coinmarketcap),
            "cryptocompare": count(Endpoint::Cryptocompare),
            "coingecko": count(Endpoint::Coingecko),
        },
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
    let sim = Sim {
        market: Arc::new(RwLock::new(Market::new(config.sim_coins, config.sim_seed))),
        faults: Arc::new(Faults::default()),
        requests,
        registry,
        seed: config.sim_seed,
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
