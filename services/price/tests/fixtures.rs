//! The recorded CoinMarketCap bodies in `testdata/upstream/` parse correctly — every
//! coin, every number used — and error bodies become typed errors, through the real client.

use anyhow::Result;
use prometheus::Registry;
use serde_json::Value;
use topcoins_price::cmc::{self, CmcClient};
use topcoins_schemas::Snapshot;
use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::testing::{fixture, serve};
use topcoins_upstream::{Upstream, UpstreamErrorKind, UpstreamMetrics};

const LISTINGS: &str = "coinmarketcap/listings_latest_100_2020-10-24.json";
const BAD_KEY: &str = "coinmarketcap/error_401_invalid_api_key_1001_2022-03-23.json";

fn client(url: &str) -> (CmcClient, UpstreamMetrics) {
    let metrics = UpstreamMetrics::register(&Registry::new()).unwrap();
    let config = HttpConfig {
        retries: 0,
        ..HttpConfig::default()
    };
    let http = Upstream::new(cmc::PROVIDER, config, metrics.clone());
    (CmcClient::new(http, url, Some("k".into())), metrics)
}

#[test]
fn listings_parse_every_coin_and_number() -> Result<()> {
    let body = fixture(LISTINGS);
    let page = cmc::parse(200, &body)?;
    let raw: Value = serde_json::from_slice(&body)?;
    let data = raw["data"].as_array().unwrap();
    assert_eq!(page.coins.len(), 100);
    assert_eq!(page.listed, 100);
    assert_eq!(page.credits, 1);
    assert_eq!(page.total_count, Some(3709));
    for (coin, expected) in page.coins.iter().zip(data) {
        assert_eq!(coin.id, expected["id"].as_u64().unwrap().to_string());
        assert_eq!(coin.symbol, expected["symbol"].as_str().unwrap());
        assert_eq!(coin.name, expected["name"].as_str().unwrap());
        let usd = &expected["quote"]["USD"];
        assert_eq!(
            coin.price_usd,
            usd["price"].as_f64().unwrap(),
            "{}",
            coin.symbol
        );
        assert_eq!(
            coin.market_cap_usd,
            usd["market_cap"].as_f64(),
            "{}",
            coin.symbol
        );
        assert!(coin.price_usd > 0.0);
    }
    let btc = &page.coins[0];
    assert_eq!(
        (btc.id.as_str(), btc.symbol.as_str(), btc.price_usd),
        ("1", "BTC", 12957.520086190707)
    );
    Ok(())
}

#[tokio::test]
async fn listings_through_the_client_make_a_snapshot() -> Result<()> {
    let (url, server) = serve(200, "application/json", fixture(LISTINGS)).await;
    let (client, metrics) = client(&url);
    let snapshot = client.snapshot(100).await?;
    assert_eq!(snapshot.len(), 100);
    assert_eq!(snapshot.source, "coinmarketcap");
    assert_eq!(snapshot.by_symbol()["BTC"].price_usd, 12957.520086190707);
    assert_eq!(
        metrics.credits.with_label_values(&["coinmarketcap"]).get(),
        1
    );
    // Canonical bytes are stable for the same body.
    assert_eq!(snapshot.encode().1, client.snapshot(100).await?.encode().1);
    server.abort();
    Ok(())
}

#[tokio::test]
async fn invalid_key_is_a_typed_auth_error() -> Result<()> {
    let body = fixture(BAD_KEY);
    let err = cmc::parse(401, &body).unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Auth);
    assert!(
        err.to_string().contains("1001") && err.to_string().contains("This API Key is invalid."),
        "{err}"
    );

    let (url, server) = serve(401, "application/json", body).await;
    let (client, _) = client(&url);
    let err = client.snapshot(100).await.unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Auth);
    server.abort();
    Ok(())
}

#[test]
fn other_providers_bodies_are_the_wrong_shape() {
    for other in [
        "coingecko/coins_markets_usd_100_2022-10-04.json",
        "cryptocompare/top_totalvolfull_USD_limit10_2020-05-04.json",
        "cryptocompare/error_api_key_required_type1.json",
    ] {
        let err = cmc::parse(200, &fixture(other)).unwrap_err();
        assert!(
            matches!(err.kind, UpstreamErrorKind::Malformed { .. }),
            "{other}: {err}"
        );
    }
}

#[test]
fn coingecko_markets_parse_every_coin_and_number() -> Result<()> {
    use topcoins_price::coingecko;
    let body = fixture("coingecko/coins_markets_usd_100_2022-10-04.json");
    let page = coingecko::parse(200, &body)?;
    let raw: Value = serde_json::from_slice(&body)?;
    let markets = raw.as_array().unwrap();
    assert_eq!(page.listed, 100);
    let priced: Vec<&Value> = markets
        .iter()
        .filter(|m| !m["current_price"].is_null())
        .collect();
    assert_eq!(page.coins.len(), priced.len());
    assert_eq!(page.unpriced, 100 - priced.len());
    for (coin, expected) in page.coins.iter().zip(priced) {
        assert_eq!(coin.id, expected["id"].as_str().unwrap());
        assert_eq!(
            coin.symbol,
            expected["symbol"].as_str().unwrap().to_uppercase()
        );
        assert_eq!(coin.name, expected["name"].as_str().unwrap());
        assert_eq!(
            coin.price_usd,
            expected["current_price"].as_f64().unwrap(),
            "{}",
            coin.id
        );
        assert_eq!(
            coin.market_cap_usd,
            expected["market_cap"].as_f64(),
            "{}",
            coin.id
        );
    }
    let snapshot = topcoins_schemas::PriceSnapshot::new(coingecko::PROVIDER, page.coins)?;
    assert_eq!(snapshot.by_symbol()["BTC"].id, "bitcoin");
    // Other providers' bodies are not CoinGecko's shape.
    for other in [
        LISTINGS,
        BAD_KEY,
        "cryptocompare/top_totalvolfull_USD_limit10_2020-05-04.json",
    ] {
        assert!(coingecko::parse(200, &fixture(other)).is_err(), "{other}");
    }
    Ok(())
}
