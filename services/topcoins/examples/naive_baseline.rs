//! The design topcoins replaces, for `bench/upstream_calls.sh`: every request calls
//! CoinMarketCap and CryptoCompare (here: the simulator) and merges on the spot.
//!
//! Usage: `naive_baseline <listen-addr> <upstream-base-url>`

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Clone)]
struct Naive {
    http: reqwest::Client,
    upstream: String,
}

async fn top(State(naive): State<Naive>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200)
        .clamp(1, 5000);
    let cmc = naive
        .http
        .get(format!(
            "{}/v1/cryptocurrency/listings/latest",
            naive.upstream
        ))
        .query(&[("limit", limit.to_string())])
        .send();
    let mut ranked = Vec::new();
    for page in 0..limit.div_ceil(100) {
        let r = naive
            .http
            .get(format!("{}/data/top/totalvolfull", naive.upstream))
            .query(&[
                ("limit", "100".to_owned()),
                ("page", page.to_string()),
                ("tsym", "USD".to_owned()),
            ])
            .send()
            .await;
        let Ok(body) = async { r?.json::<Value>().await }.await else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        ranked.extend(body["Data"].as_array().cloned().unwrap_or_default());
    }
    let Ok(prices) = async { cmc.await?.json::<Value>().await }.await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let by_symbol: HashMap<&str, f64> = prices["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["symbol"].as_str()?, c["quote"]["USD"]["price"].as_f64()?)))
        .collect();
    let data: Vec<Value> = ranked
        .iter()
        .take(limit)
        .enumerate()
        .map(|(i, c)| {
            let symbol = c["CoinInfo"]["Name"].as_str().unwrap_or_default();
            json!({"rank": i + 1, "symbol": symbol, "price_usd": by_symbol.get(symbol)})
        })
        .collect();
    axum::Json(json!({ "data": data })).into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: naive_baseline <listen-addr> <upstream-base-url>";
    let addr: SocketAddr = args.next().expect(usage).parse().expect("listen address");
    let upstream = args.next().expect(usage);
    topcoins_upstream::init_tls();
    let naive = Naive {
        http: reqwest::Client::new(),
        upstream,
    };
    let app = Router::new().route("/", get(top)).with_state(naive);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
