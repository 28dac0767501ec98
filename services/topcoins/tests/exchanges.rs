//! The exchange actors end to end (issue 12, part 1): a real nats-server, the simulator
//! speaking Kraken's, Coinbase's and Binance's formats, and `topcoins exchanges` polling the
//! tracked pairs of all three, each exchange's tickers announced as a snapshot kind of its own.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{Component, Harness, POLL, eventually};
use serde_json::{Value, json};
use topcoins_bus::SnapshotStore;
use topcoins_exchanges::ExchangesConfig;
use topcoins_schemas::{Binance, Coinbase, Exchange, Kraken, Snapshot, TickerSnapshot};

fn config(h: &Harness, pairs: &[&str]) -> ExchangesConfig {
    ExchangesConfig {
        exchanges: vec!["kraken".into(), "coinbase".into(), "binance".into()],
        pairs: pairs.iter().map(|p| (*p).to_owned()).collect(),
        exchange_interval: Some(POLL),
        markets_refresh: Duration::from_secs(3600),
        kraken_url: h.sim_url(),
        coinbase_url: h.sim_url(),
        binance_url: h.sim_url(),
    }
}

fn start(h: &Harness, config: ExchangesConfig) -> Component {
    let mut context = h.context("exchanges");
    context.http.retries = 0;
    Component::spawn(move |s| Box::pin(topcoins_exchanges::run(config, context, s.wait())))
}

/// The newest snapshot of an exchange, once there is one.
async fn latest<E: Exchange>(store: &SnapshotStore) -> Result<Option<TickerSnapshot<E>>> {
    let Some(latest) = store.latest(E::KIND).await? else {
        return Ok(None);
    };
    let bytes = store.fetch(latest.notice.hash).await?;
    Ok(Some(TickerSnapshot::<E>::decode(&bytes)?))
}

fn pairs<E: Exchange>(s: &TickerSnapshot<E>) -> Vec<&str> {
    s.tickers.iter().map(|t| t.pair.as_str()).collect()
}

async fn sim_json(h: &Harness, path: &str) -> Result<Value> {
    Ok(h.get(&format!("{}{path}", h.sim_url()))
        .await?
        .json()
        .await?)
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exchange_announces_the_tracked_pairs_it_lists() -> Result<()> {
    let h = Harness::start(200).await?;
    let exchanges = start(
        &h,
        config(
            &h,
            &[
                "kraken:btc-usd",
                "kraken:eth-usd",
                "kraken:zzz-usd", // not listed: counted, the others polled
                "coinbase:btc-usd",
                "coinbase:eth-usd",
                "binance:btc-usdt",
                "binance:eth-usdt",
            ],
        ),
    );
    let store = SnapshotStore::open(async_nats::connect(h.nats.url()).await?).await?;

    let kraken = eventually("a Kraken snapshot", || latest::<Kraken>(&store)).await?;
    let coinbase = eventually("a Coinbase snapshot", || latest::<Coinbase>(&store)).await?;
    let binance = eventually("a Binance snapshot", || latest::<Binance>(&store)).await?;
    assert_eq!(pairs(&kraken), ["btc-usd", "eth-usd"]);
    assert_eq!(pairs(&coinbase), ["btc-usd", "eth-usd"]);
    assert_eq!(pairs(&binance), ["btc-usdt", "eth-usdt"]);
    assert!(
        h.actor_metric(
            "topcoins_upstream_rejected_total",
            &[("provider", "kraken"), ("reason", "unknown_pair")]
        ) >= 1.0
    );

    // Field by field what each exchange's own endpoint says (the market is frozen).
    let k = sim_json(&h, "/0/public/Ticker?pair=XBTUSD").await?;
    let k = k["result"]
        .as_object()
        .and_then(|r| r.values().next())
        .context("a Kraken ticker")?
        .clone();
    let btc = kraken.get("btc-usd").context("btc-usd on Kraken")?;
    assert_eq!(btc.price, num(&k["c"][0]));
    assert_eq!(btc.high, num(&k["h"][1]));
    assert_eq!(btc.low, num(&k["l"][1]));
    assert_eq!(btc.volume, num(&k["v"][1]));
    assert_eq!(btc.change_abs, num(&k["c"][0]) - num(&k["o"]));

    let b = sim_json(&h, "/api/v3/ticker/24hr?symbol=ETHUSDT").await?;
    let eth = binance.get("eth-usdt").context("eth-usdt on Binance")?;
    assert_eq!(eth.price, num(&b["lastPrice"]));
    assert_eq!(eth.volume_quote, num(&b["quoteVolume"]));
    assert_eq!(eth.change_pct, num(&b["priceChangePercent"]));

    let c = sim_json(&h, "/products/BTC-USD/stats").await?;
    let t = sim_json(&h, "/products/BTC-USD/ticker").await?;
    let btc = coinbase.get("btc-usd").context("btc-usd on Coinbase")?;
    assert_eq!(btc.price, num(&t["price"]));
    assert_eq!(btc.high, num(&c["high"]));
    assert_eq!(btc.volume, num(&c["volume"]));

    // Unchanged polls announce nothing; a market move announces each exchange once more.
    let before = h.published("kraken_tickers");
    h.cycles_past("kraken_tickers", h.cycles("kraken_tickers"), 3.0)
        .await?;
    assert_eq!(h.published("kraken_tickers"), before);
    h.tick().await?;
    eventually("a new Kraken snapshot after the move", || async {
        Ok((h.published("kraken_tickers") > before).then_some(()))
    })
    .await?;
    let moved = latest::<Kraken>(&store).await?.context("kraken")?;
    assert_ne!(moved.canonical_bytes(), kraken.canonical_bytes());

    // One exchange failing leaves the others polling and announcing.
    h.fault(json!({"endpoint": "kraken", "fault": "status", "status": 500}))
        .await?;
    let (k0, b0) = (
        h.published("kraken_tickers"),
        h.published("binance_tickers"),
    );
    h.tick().await?;
    eventually("Binance to announce while Kraken fails", || async {
        Ok((h.published("binance_tickers") > b0).then_some(()))
    })
    .await?;
    h.cycles_past("kraken_tickers", h.cycles("kraken_tickers"), 2.0)
        .await?;
    assert_eq!(
        h.published("kraken_tickers"),
        k0,
        "nothing from a failing exchange"
    );
    h.clear_faults().await?;

    // A pair whose figures are broken is left out; the other pair of that exchange is not.
    h.fault(json!({"endpoint": "binance", "fault": "negative_price"}))
        .await?;
    h.tick().await?;
    let rejected = || {
        h.actor_metric(
            "topcoins_upstream_rejected_total",
            &[("provider", "binance"), ("reason", "negative")],
        )
    };
    eventually("the broken Binance pair to be rejected", || async {
        Ok((rejected() >= 1.0).then_some(()))
    })
    .await?;
    let one = eventually("a Binance snapshot without the broken pair", || async {
        Ok(latest::<Binance>(&store)
            .await?
            .filter(|s| s.tickers.len() == 1))
    })
    .await?;
    assert_eq!(one.tickers.len(), 1);
    exchanges.stop().await;
    Ok(())
}

#[test]
fn the_contract_names_the_kinds() {
    assert_eq!(Kraken::KIND.as_str(), "kraken_tickers");
    assert_eq!(Coinbase::KIND.as_str(), "coinbase_tickers");
    assert_eq!(Binance::KIND.as_str(), "binance_tickers");
    for kind in [Kraken::KIND, Coinbase::KIND, Binance::KIND] {
        assert!(topcoins_bus::subjects::KINDS.contains(&kind));
    }
}
