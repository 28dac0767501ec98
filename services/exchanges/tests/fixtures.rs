//! Recorded and documented bodies (`testdata/upstream/{kraken,binance,coinbase}`, provenance in
//! `SOURCES.md`), parsed field by field against the body read independently with serde_json.

use serde_json::Value;
use topcoins_exchanges::{Pair, Ticker, Window, binance, coinbase, kraken};
use topcoins_upstream::UpstreamErrorKind;

fn fixture(path: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../testdata/upstream/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn f(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn find<'a>(ts: &'a [Ticker], pair: &str) -> &'a Ticker {
    ts.iter().find(|t| t.pair.as_str() == pair).unwrap()
}

fn check_kraken(file: &str, keys: &[(&str, &str)]) {
    let body = fixture(file);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let parsed = kraken::parse(200, &body).unwrap();
    assert!(parsed.rejected.is_empty());
    assert_eq!(parsed.tickers.len(), keys.len());
    for (key, pair) in keys {
        let r = &raw["result"][key];
        let t = find(&parsed.tickers, pair);
        assert_eq!(t.price, f(&r["c"][0]));
        assert_eq!(t.high_24h, f(&r["h"][1]));
        assert_eq!(t.low_24h, f(&r["l"][1]));
        assert_eq!(t.open_24h, Some(f(&r["o"])));
        assert_eq!(t.volume, f(&r["v"][1]));
        assert_eq!(t.volume_quote, f(&r["v"][1]) * f(&r["p"][1]));
        assert_eq!(t.change_abs, f(&r["c"][0]) - f(&r["o"]));
        assert_eq!(
            t.change_pct,
            (f(&r["c"][0]) - f(&r["o"])) / f(&r["o"]) * 100.0
        );
        assert_eq!(
            (t.window, t.change_window),
            (Window::Rolling24h, Window::UtcDay)
        );
    }
}

#[test]
fn kraken_two_legacy_keys() {
    check_kraken(
        "kraken/ticker_XETHZUSD_XXBTZUSD.json",
        &[("XETHZUSD", "eth-usd"), ("XXBTZUSD", "btc-usd")],
    );
}

#[test]
fn kraken_new_and_legacy_keys() {
    check_kraken(
        "kraken/ticker_DAIUSD_ETHUSD.json",
        &[("DAIUSD", "dai-usd"), ("XETHZUSD", "eth-usd")],
    );
}

#[test]
fn kraken_error_at_http_200_is_typed() {
    let err = kraken::parse(200, &fixture("kraken/error_unknown_asset_pair.json")).unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Provider { code: 200 });
    assert!(err.message.contains("EQuery:Unknown asset pair"));
}

#[test]
fn kraken_one_bad_pair_keeps_the_others() {
    let body = String::from_utf8(fixture("kraken/ticker_XETHZUSD_XXBTZUSD.json")).unwrap();
    let bad = body.replacen("\"c\":[\"3338.08000\"", "\"c\":[\"inf\"", 1);
    let parsed = kraken::parse(200, bad.as_bytes()).unwrap();
    assert_eq!(parsed.tickers.len(), 1);
    assert_eq!(parsed.tickers[0].pair, Pair::parse("btc-usd").unwrap());
    assert_eq!(parsed.rejected.len(), 1);
    assert_eq!(
        (parsed.rejected[0].key.as_str(), parsed.rejected[0].reason),
        ("XETHZUSD", "non_finite")
    );

    let missing = body.replacen("\"o\":\"3518.43000\"", "\"x\":\"1\"", 1);
    let parsed = kraken::parse(200, missing.as_bytes()).unwrap();
    assert_eq!(parsed.rejected[0].reason, "missing_field");
    assert_eq!(parsed.tickers.len(), 1);

    let negative = body.replacen(
        "\"v\":[\"33234.61736920\",\"35692.20596751\"]",
        "\"v\":[\"1\",\"-5\"]",
        1,
    );
    assert_eq!(
        kraken::parse(200, negative.as_bytes()).unwrap().rejected[0].reason,
        "negative"
    );
}

#[test]
fn kraken_broken_shape_names_the_path() {
    let err = kraken::parse(200, br#"{"error":[],"result":[1]}"#).unwrap_err();
    assert_eq!(
        err.kind,
        UpstreamErrorKind::Malformed {
            path: "result".into()
        }
    );
    let err = kraken::parse(200, br#"{"error":[]}"#).unwrap_err();
    assert!(matches!(err.kind, UpstreamErrorKind::Malformed { .. }));
    let err = kraken::parse(502, b"<html>").unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Status(502));
}

fn check_binance(t: &Ticker, r: &Value) {
    assert_eq!(t.price, f(&r["lastPrice"]));
    assert_eq!(t.high_24h, f(&r["highPrice"]));
    assert_eq!(t.low_24h, f(&r["lowPrice"]));
    assert_eq!(t.open_24h, Some(f(&r["openPrice"])));
    assert_eq!(t.change_abs, f(&r["priceChange"]));
    assert_eq!(t.change_pct, f(&r["priceChangePercent"]));
    assert_eq!(t.volume, f(&r["volume"]));
    assert_eq!(t.volume_quote, f(&r["quoteVolume"]));
    assert_eq!(
        (t.window, t.change_window),
        (Window::Rolling24h, Window::Rolling24h)
    );
}

#[test]
fn binance_single_objects() {
    for file in [
        "binance/ticker_24hr_BTCUSDT_2018-06-29.json",
        "binance/ticker_24hr_documented_example.json",
    ] {
        let body = fixture(file);
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let parsed = binance::parse(200, &body).unwrap();
        assert!(parsed.rejected.is_empty());
        assert_eq!(parsed.tickers.len(), 1);
        assert_eq!(parsed.tickers[0].pair.as_str(), "btc-usdt");
        check_binance(&parsed.tickers[0], &raw);
    }
}

#[test]
fn binance_array_and_one_bad_item() {
    let body = fixture("binance/ticker_24hr_array_two.json");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let parsed = binance::parse(200, &body).unwrap();
    assert_eq!(parsed.tickers.len(), 2);
    for (t, r) in parsed.tickers.iter().zip(raw.as_array().unwrap()) {
        check_binance(t, r);
    }
    let bad = String::from_utf8(body).unwrap().replacen(
        "\"lastPrice\":\"5872.04000000\"",
        "\"lastPrice\":\"-1\"",
        1,
    );
    let parsed = binance::parse(200, bad.as_bytes()).unwrap();
    assert_eq!(parsed.tickers.len(), 1);
    assert_eq!(
        (parsed.rejected[0].key.as_str(), parsed.rejected[0].reason),
        ("BTCUSDT", "negative")
    );
    let err = binance::parse(200, br#"[{"symbol":"BTCUSDT"},7]"#).unwrap_err();
    assert_eq!(
        err.kind,
        UpstreamErrorKind::Malformed { path: "[1]".into() }
    );
}

#[test]
fn binance_error_body_is_typed() {
    let body = fixture("binance/error_-1121_invalid_symbol.json");
    let err = binance::parse(400, &body).unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Provider { code: -1121 });
    assert!(err.message.contains("Invalid symbol."));
    let err = binance::parse(429, br#"{"code":-1003,"msg":"Too many requests"}"#).unwrap_err();
    assert!(matches!(err.kind, UpstreamErrorKind::RateLimited { .. }));
}

#[test]
fn coinbase_ticker_and_stats_combined() {
    let tb = fixture("coinbase/ticker_BTC-USD_2026-06-19.json");
    let sb = fixture("coinbase/stats_BTC-USD_2026-06-19.json");
    let tr: Value = serde_json::from_slice(&tb).unwrap();
    let sr: Value = serde_json::from_slice(&sb).unwrap();
    let parsed = coinbase::parse("BTC-USD", (200, &tb), (200, &sb)).unwrap();
    assert!(parsed.rejected.is_empty());
    let t = &parsed.tickers[0];
    assert_eq!(t.pair.as_str(), "btc-usd");
    assert_eq!(t.price, f(&tr["price"]));
    assert_eq!(t.high_24h, f(&sr["high"]));
    assert_eq!(t.low_24h, f(&sr["low"]));
    assert_eq!(t.open_24h, Some(f(&sr["open"])));
    assert_eq!(t.volume, f(&sr["volume"]));
    assert_eq!(t.volume_quote, f(&sr["volume"]) * f(&tr["price"]));
    assert_eq!(t.change_abs, f(&tr["price"]) - f(&sr["open"]));
    assert_eq!(
        t.change_pct,
        (f(&tr["price"]) - f(&sr["open"])) / f(&sr["open"]) * 100.0
    );

    let bad = String::from_utf8(sb.clone())
        .unwrap()
        .replacen("\"high\":\"63351.3\",", "", 1);
    let parsed = coinbase::parse("BTC-USD", (200, &tb), (200, bad.as_bytes())).unwrap();
    assert!(parsed.tickers.is_empty());
    assert_eq!(
        (parsed.rejected[0].key.as_str(), parsed.rejected[0].reason),
        ("BTC-USD", "missing_field")
    );
}

#[test]
fn coinbase_error_body_is_typed() {
    let tb = fixture("coinbase/ticker_BTC-USD_2026-06-19.json");
    let err = coinbase::parse(
        "FOO-USD",
        (404, &fixture("coinbase/error_notfound.json")),
        (200, &tb),
    )
    .unwrap_err();
    assert_eq!(err.kind, UpstreamErrorKind::Provider { code: 404 });
    assert!(err.message.contains("NotFound"));
    let err = coinbase::parse("BTC-USD", (200, b"[]"), (200, &tb)).unwrap_err();
    assert!(matches!(err.kind, UpstreamErrorKind::Malformed { .. }));
}

// The pairs endpoints (`markets`): recorded bodies, each entry checked against the raw body.

fn pairs(markets: &[topcoins_exchanges::markets::Market]) -> Vec<(String, String)> {
    markets
        .iter()
        .map(|m| (m.pair.to_string(), m.name.clone()))
        .collect()
}

#[test]
fn kraken_asset_pairs_recorded() {
    let body = fixture("kraken/asset_pairs_5pairs_2026-09-25.json");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let markets = topcoins_exchanges::markets::kraken(200, &body).unwrap();
    // Kraken's asset codes mapped (XXBT → btc, XXDG → doge, XETH → eth, ZUSD → usd, ZEUR →
    // eur), the query name is `altname`, sorted by pair. `ACAEUR` is `cancel_only`: its
    // ticker still answers, so it can be tracked (only `delisted` pairs are left out).
    assert_eq!(
        pairs(&markets),
        [
            ("aca-eur", "ACAEUR"),
            ("btc-usd", "XBTUSD"),
            ("doge-usd", "XDGUSD"),
            ("eth-btc", "ETHXBT"),
            ("sol-usd", "SOLUSD"),
        ]
        .map(|(p, n)| (p.to_owned(), n.to_owned()))
    );
    for m in &markets {
        let entry = raw["result"]
            .as_object()
            .unwrap()
            .values()
            .find(|e| e["altname"] == m.name.as_str())
            .unwrap();
        assert_ne!(entry["status"], "delisted");
    }
    // A delisted pair and a dark-pool book are left out; the rest stays.
    let mut edited = raw.clone();
    edited["result"]["XXBTZUSD"]["status"] = "delisted".into();
    edited["result"]["XXBTZUSD.d"] = raw["result"]["XXBTZUSD"].clone();
    let markets =
        topcoins_exchanges::markets::kraken(200, &serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_eq!(markets.len(), 4);
    assert!(markets.iter().all(|m| m.pair.as_str() != "btc-usd"));
    // Kraken's error envelope, as for the ticker.
    let err =
        topcoins_exchanges::markets::kraken(200, &fixture("kraken/error_unknown_asset_pair.json"))
            .unwrap_err();
    assert!(
        matches!(&err.kind, UpstreamErrorKind::Provider { .. }),
        "{err}"
    );
}

#[test]
fn coinbase_products_recorded() {
    let body = fixture("coinbase/products_11_xrp_delisted.json");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let markets = topcoins_exchanges::markets::coinbase(200, &body).unwrap();
    // The four XRP products are `delisted` with trading disabled: left out.
    let online: Vec<&Value> = raw
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "online" && p["trading_disabled"] == false)
        .collect();
    assert_eq!(online.len(), 7);
    assert_eq!(markets.len(), 7);
    for p in online {
        let id = p["id"].as_str().unwrap();
        let m = markets.iter().find(|m| m.name == id).unwrap();
        assert_eq!(
            m.pair.base(),
            p["base_currency"].as_str().unwrap().to_lowercase()
        );
        assert_eq!(
            m.pair.quote(),
            p["quote_currency"].as_str().unwrap().to_lowercase()
        );
    }
    assert!(markets.iter().all(|m| !m.name.starts_with("XRP-")));
    let err = topcoins_exchanges::markets::coinbase(404, &fixture("coinbase/error_notfound.json"))
        .unwrap_err();
    assert!(
        matches!(&err.kind, UpstreamErrorKind::Provider { .. }),
        "{err}"
    );
}

#[test]
fn binance_exchange_info_recorded() {
    let body = fixture("binance/exchange_info_ETHBTC_2025-06-21.json");
    let markets = topcoins_exchanges::markets::binance(200, &body).unwrap();
    assert_eq!(
        pairs(&markets),
        [("eth-btc".to_owned(), "ETHBTC".to_owned())]
    );
    // Binance.US, every symbol in `BREAK`: none is tradable now, so none is listed.
    let body = fixture("binance/exchange_info_binanceus_3break_2025-05-28.json");
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        raw["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "BREAK")
    );
    assert!(
        topcoins_exchanges::markets::binance(200, &body)
            .unwrap()
            .is_empty()
    );
    // The same symbols trading: listed, `USD4` as the quote.
    let trading = String::from_utf8(body)
        .unwrap()
        .replace("\"BREAK\"", "\"TRADING\"");
    let markets = topcoins_exchanges::markets::binance(200, trading.as_bytes()).unwrap();
    assert_eq!(
        markets.iter().map(|m| m.pair.as_str()).collect::<Vec<_>>(),
        ["btc-usd4", "eth-usd4", "xrp-usd4"]
    );
    let err = topcoins_exchanges::markets::binance(
        400,
        &fixture("binance/error_-1121_invalid_symbol.json"),
    )
    .unwrap_err();
    assert!(
        matches!(&err.kind, UpstreamErrorKind::Provider { code: -1121 }),
        "{err}"
    );
}
