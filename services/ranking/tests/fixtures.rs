//! The recorded CryptoCompare bodies in `testdata/upstream/` parse correctly — every
//! coin, every number used — and their errors (inside HTTP 200) become typed errors.

use anyhow::Result;
use prometheus::Registry;
use serde_json::Value;
use topcoins_ranking::cryptocompare::{self, CryptoCompareClient};
use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::testing::{fixture, serve};
use topcoins_upstream::{Upstream, UpstreamErrorKind, UpstreamMetrics};

const TOP10: &str = "cryptocompare/top_totalvolfull_USD_limit10_2020-05-04.json";

fn check_every_coin(relative: &str, expected_len: usize) -> Result<()> {
    let body = fixture(relative);
    let coins = cryptocompare::parse(200, &body)?;
    let raw: Value = serde_json::from_slice(&body)?;
    let data = raw["Data"].as_array().unwrap();
    assert_eq!(coins.len(), expected_len, "{relative}");
    for (coin, expected) in coins.iter().zip(data) {
        let info = &expected["CoinInfo"];
        assert_eq!(coin.id, info["Id"].as_str().unwrap());
        assert_eq!(coin.symbol, info["Name"].as_str().unwrap());
        assert_eq!(coin.name, info["FullName"].as_str().unwrap());
        let usd = &expected["RAW"]["USD"];
        assert_eq!(
            coin.volume_24h_usd,
            usd["TOTALVOLUME24HTO"].as_f64(),
            "{}",
            coin.symbol
        );
        assert_eq!(coin.price_usd, usd["PRICE"].as_f64(), "{}", coin.symbol);
        assert!(coin.volume_24h_usd.unwrap() > 0.0);
    }
    Ok(())
}

#[test]
fn toplists_parse_every_coin_and_number() -> Result<()> {
    check_every_coin(TOP10, 10)?;
    check_every_coin(
        "cryptocompare/top_totalvolfull_USD_1coin_trimmed_2021-11-18.json",
        1,
    )?;
    // The market-cap toplist has the same shape (and dubious tokens); it parses too.
    check_every_coin(
        "cryptocompare/top_mktcapfull_USD_limit10_2020-05-04.json",
        10,
    )?;
    Ok(())
}

#[test]
fn inverted_conversion_is_already_in_usd() -> Result<()> {
    let coins = cryptocompare::parse(200, &fixture(TOP10))?;
    let tusd = coins.iter().find(|c| c.symbol == "TUSD").unwrap();
    let price = tusd.price_usd.unwrap();
    assert!(
        (0.9..1.1).contains(&price),
        "TUSD (CONVERSIONTYPE invert) is priced {price}"
    );
    Ok(())
}

#[tokio::test]
async fn toplist_through_the_client_is_ranked_by_volume() -> Result<()> {
    let (url, server) = serve(200, "application/json", fixture(TOP10)).await;
    let metrics = UpstreamMetrics::register(&Registry::new())?;
    let http = Upstream::new(
        cryptocompare::PROVIDER,
        HttpConfig::default(),
        metrics.clone(),
    );
    let client = CryptoCompareClient::new(http, &url, Some("secret".into()));
    let snapshot = client.snapshot(100).await?;
    assert_eq!(snapshot.coins.len(), 10, "a short page ends the paging");
    let volumes: Vec<f64> = snapshot
        .coins
        .iter()
        .map(|c| c.volume_24h_usd.unwrap())
        .collect();
    assert!(volumes.windows(2).all(|w| w[0] >= w[1]), "{volumes:?}");
    assert_eq!(snapshot.coins[0].symbol, "BTC");
    assert_eq!(
        metrics.credits.with_label_values(&["cryptocompare"]).get(),
        1
    );
    server.abort();
    Ok(())
}

#[test]
fn allowance_is_read_from_rate_limit_blocks() {
    let mut left =
        cryptocompare::calls_left(&fixture("cryptocompare/stats_rate_limit_withkey.json"));
    left.sort();
    assert_eq!(
        left,
        [
            ("day".to_owned(), 49967),
            ("hour".into(), 24979),
            ("minute".into(), 2498),
            ("month".into(), 99967),
            ("second".into(), 48)
        ]
    );
    assert!(
        !cryptocompare::calls_left(&fixture("cryptocompare/stats_rate_limit_nokey.json"))
            .is_empty()
    );
    let limited = br#"{"Response":"Error","Type":99,"RateLimit":{"calls_made":{"month":100001},"max_calls":{"month":100000}}}"#;
    assert_eq!(
        cryptocompare::calls_left(limited),
        [("month".to_owned(), -1)]
    );
    assert!(
        cryptocompare::calls_left(&fixture(TOP10)).is_empty(),
        "an empty RateLimit says nothing"
    );
}

#[test]
fn errors_in_http_200_are_typed() {
    let cases = [
        (
            "cryptocompare/error_api_key_required_type1.json",
            UpstreamErrorKind::Auth,
        ),
        (
            "cryptocompare/error_missing_param_top_mktcapfull.json",
            UpstreamErrorKind::Provider { code: 2 },
        ),
        (
            "cryptocompare/error_path_does_not_exist_totalvolumefull.json",
            UpstreamErrorKind::Provider { code: 0 },
        ),
    ];
    for (file, kind) in cases {
        let err = cryptocompare::parse(200, &fixture(file)).unwrap_err();
        assert_eq!(err.kind, kind, "{file}");
        assert!(!err.message.is_empty());
    }
}

#[test]
fn other_endpoints_bodies_are_the_wrong_shape() {
    for (file, path) in [
        ("cryptocompare/stats_rate_limit_withkey.json", "Data"),
        ("cryptocompare/stats_rate_limit_nokey.json", "Data"),
        (
            "cryptocompare/v2_histoday_BTC_USD_limit7_2021-11-21.json",
            "Data",
        ),
        (
            "cryptocompare/v2_histohour_BTC_USD_limit24_2021-11-21.json",
            "Data",
        ),
        (
            "cryptocompare/v2_histominute_BTC_USD_limit60_2021-11-21.json",
            "Data",
        ),
        ("coinmarketcap/listings_latest_100_2020-10-24.json", "Data"),
    ] {
        let err = cryptocompare::parse(200, &fixture(file)).unwrap_err();
        assert_eq!(
            err.kind,
            UpstreamErrorKind::Malformed { path: path.into() },
            "{file}: {err}"
        );
    }
    let err = cryptocompare::parse(
        200,
        &fixture("coingecko/coins_markets_usd_100_2022-10-04.json"),
    )
    .unwrap_err();
    assert!(
        matches!(err.kind, UpstreamErrorKind::Malformed { .. }),
        "{err}"
    );
}
