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

fn client(url: &str) -> Result<(CryptoCompareClient, UpstreamMetrics)> {
    let metrics = UpstreamMetrics::register(&Registry::new())?;
    let http = Upstream::new(
        cryptocompare::PROVIDER,
        HttpConfig::default(),
        metrics.clone(),
    );
    Ok((
        CryptoCompareClient::new(http, url, Some("secret".into())),
        metrics,
    ))
}

/// The recorded toplist is not sorted by the volumes it shows: BSV (7th) shows less
/// `TOTALVOLUME24HTO` than XRP (8th) — CryptoCompare sorts before rendering. The rank is the
/// provider's order all the same.
#[tokio::test]
async fn toplist_through_the_client_keeps_the_providers_order() -> Result<()> {
    let body = fixture(TOP10);
    let raw: Value = serde_json::from_slice(&body)?;
    let listed: Vec<&str> = raw["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["CoinInfo"]["Name"].as_str().unwrap())
        .collect();
    let (url, server) = serve(200, "application/json", body).await;
    let (client, metrics) = client(&url)?;
    let snapshot = client.snapshot(100).await?;
    assert_eq!(snapshot.coins.len(), 10, "a short page ends the paging");
    let order: Vec<&str> = snapshot.coins.iter().map(|c| c.symbol.as_str()).collect();
    assert_eq!(order, listed);
    let (bsv, xrp) = (&snapshot.coins[6], &snapshot.coins[7]);
    assert_eq!((bsv.symbol.as_str(), xrp.symbol.as_str()), ("BSV", "XRP"));
    assert!(
        bsv.volume_24h_usd < xrp.volume_24h_usd,
        "the recorded body no longer disagrees with its volumes: {:?} {:?}",
        bsv.volume_24h_usd,
        xrp.volume_24h_usd
    );
    assert_eq!(
        metrics.credits.with_label_values(&["cryptocompare"]).get(),
        1
    );
    server.abort();
    Ok(())
}

/// A toplist entry in the recorded shape, for pages the recordings do not have.
fn entry(id: u32) -> Value {
    serde_json::json!({
        "CoinInfo": {"Id": id.to_string(), "Name": format!("C{id}"), "FullName": format!("Coin {id}")},
        "RAW": {"USD": {"PRICE": 1.0, "TOTALVOLUME24HTO": f64::from(id)}},
    })
}

/// Serves toplist page `n` (the `page` query parameter) from `pages[n]`, an empty list beyond.
async fn serve_pages(pages: Vec<Vec<u32>>) -> Result<(String, tokio::task::JoinHandle<()>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let page: usize = line
                .split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix("page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let data: Vec<Value> = pages
                .get(page)
                .into_iter()
                .flatten()
                .map(|&id| entry(id))
                .collect();
            let body =
                serde_json::json!({"Message": "Success", "Type": 100, "Data": data}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    Ok((url, task))
}

/// The market moved between two page reads: coins 95–100 of page 0 show up again on page 1.
/// Each keeps its first place, the repeats are counted, and the snapshot is made; ranks follow
/// the pages' order (page × 100 + index), not the volumes (here rising with the id).
#[tokio::test]
async fn coins_repeated_on_a_later_page_keep_their_first_place() -> Result<()> {
    let first: Vec<u32> = (1..=100).collect();
    let second: Vec<u32> = (95..=120).collect();
    let (url, server) = serve_pages(vec![first, second]).await?;
    let (client, metrics) = client(&url)?;
    let snapshot = client.snapshot(300).await?;
    let ids: Vec<u32> = snapshot
        .coins
        .iter()
        .map(|c| c.id.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=120).collect::<Vec<_>>());
    assert_eq!(
        metrics
            .rejected
            .with_label_values(&["cryptocompare", "duplicate_entry"])
            .get(),
        6
    );
    assert_eq!(
        metrics.credits.with_label_values(&["cryptocompare"]).get(),
        2,
        "the short second page ends the paging"
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
