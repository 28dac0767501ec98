//! The exchange actors end to end (issue 12, part 1): a real nats-server, the simulator
//! speaking Kraken's, Coinbase's and Binance's formats, and `topcoins exchanges` polling the
//! tracked pairs of all three, each exchange's tickers announced as a snapshot kind of its own.

mod common;

use anyhow::{Context, Result};
use common::{Harness, eventually};
use serde_json::{Value, json};
use topcoins_bus::SnapshotStore;
use topcoins_schemas::{Binance, Coinbase, Exchange, Kraken, Snapshot, TickerSnapshot};

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
    let exchanges = h.start_exchanges(&[
        "kraken:btc-usd",
        "kraken:eth-usd",
        "kraken:zzz-usd", // not listed: counted, the others polled
        "coinbase:btc-usd",
        "coinbase:eth-usd",
        "binance:btc-usdt",
        "binance:eth-usdt",
    ]);
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

    // An API node serves them as metrics, from memory.
    let node = h.start_api().await?;
    let listed = eventually("the node to list Kraken's metrics", || async {
        let r = h
            .get(&node.url("/v1/metrics?exchange=kraken&limit=100"))
            .await?;
        let v: Value = r.json().await?;
        Ok((v["meta"]["count"] == 14).then_some(v))
    })
    .await?;
    assert_eq!(listed["data"][0]["id"], "kraken:btc-usd:change_abs");
    assert_eq!(listed["meta"]["next_cursor"], Value::Null);
    let page = h
        .get(&node.url("/v1/metrics?metric=price&limit=2"))
        .await?
        .json::<Value>()
        .await?;
    eventually("all three exchanges' prices on the node", || async {
        let v: Value = h
            .get(&node.url("/v1/metrics?metric=price"))
            .await?
            .json()
            .await?;
        Ok((v["meta"]["count"] == 6).then_some(()))
    })
    .await?;
    assert_eq!(page["meta"]["count"], 2);
    let next = page["meta"]["next_cursor"]
        .as_str()
        .context("a next page")?;
    let rest: Value = h
        .get(&node.url(&format!("/v1/metrics?metric=price&cursor={next}")))
        .await?
        .json()
        .await?;
    assert_eq!(rest["meta"]["count"], 4, "six prices in pages of 2 + 4");
    // What can be tracked: each exchange's own pairs list, as the simulator lists it.
    let listed = eventually("the node to list the three exchanges", || async {
        let v: Value = h.get(&node.url("/v1/exchanges")).await?.json().await?;
        Ok((v["data"].as_array().map(Vec::len) == Some(3)).then_some(v))
    })
    .await?;
    let products = sim_json(&h, "/products").await?;
    let coinbase_pairs = listed["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["id"] == "coinbase"))
        .context("coinbase listed")?["pairs"]
        .as_array()
        .context("pairs")?
        .clone();
    assert_eq!(
        coinbase_pairs.len(),
        products.as_array().map_or(0, Vec::len),
        "every product of /products"
    );
    assert!(coinbase_pairs.contains(&json!("btc-usd")));
    assert!(
        coinbase_pairs
            .windows(2)
            .all(|w| w[0].as_str() < w[1].as_str()),
        "sorted"
    );
    let r = h.get(&node.url("/v1/metrics/kraken:btc-usd:price")).await?;
    assert_eq!(r.status(), 200);
    let one: Value = r.json().await?;
    assert_eq!(
        one["value"].as_f64(),
        Some(kraken.get("btc-usd").unwrap().price)
    );
    assert_eq!(one["window"], "rolling_24h");
    let r = h
        .get(&node.url("/v1/metrics/kraken:btc-usd:change_pct"))
        .await?;
    assert_eq!(r.json::<Value>().await?["window"], "utc_day");
    // Ranks: each price metric's standard deviation over its polls (unchanged ones included),
    // ranked among the six price metrics, largest first, ties sharing a position.
    h.tick().await?;
    let ranked = eventually("every price metric ranked with a deviation", || async {
        let mut all = Vec::new();
        for id in [
            "binance:btc-usdt:price",
            "binance:eth-usdt:price",
            "coinbase:btc-usd:price",
            "coinbase:eth-usd:price",
            "kraken:btc-usd:price",
            "kraken:eth-usd:price",
        ] {
            let v: Value = h
                .get(&node.url(&format!("/v1/metrics/{id}")))
                .await?
                .json()
                .await?;
            let rank = &v["rank"];
            let Some(sd) = rank["stddev_24h"].as_f64() else {
                return Ok(None);
            };
            all.push((
                id,
                rank["position"].as_u64().unwrap_or(0),
                rank["of"].clone(),
                sd,
            ));
        }
        // After the move, deviations are no longer all 0. The six are read one by one and
        // the ranks are recomputed every poll: take a set read within one ranks snapshot
        // (positions consistent with the deviations read); a wrong ranking never is one.
        let consistent = all.iter().all(|(_, position, _, sd)| {
            *position == all.iter().filter(|(.., o)| o > sd).count() as u64 + 1
        });
        Ok((consistent && all.iter().any(|(.., sd)| *sd > 0.0)).then_some(all))
    })
    .await?;
    for (id, position, of, sd) in &ranked {
        assert_eq!(*of, json!(6), "{id}");
        let larger = ranked.iter().filter(|(.., o)| o > sd).count() as u64;
        assert_eq!(*position, larger + 1, "{id}: {ranked:?}");
    }

    for (path, status, code) in [
        ("/v1/metrics/kraken:zzz-usd:price", 404, "unknown_metric"),
        ("/v1/metrics/kraken:btc-usd:open", 400, "invalid_metric_id"),
        ("/v1/metrics?exchange=ftx", 400, "unknown_exchange"),
        ("/v1/metrics?limit=0", 400, "invalid_limit"),
    ] {
        let r = h.get(&node.url(path)).await?;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.json::<Value>().await?["error"]["code"], code, "{path}");
    }

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
    // The node's answers (made ahead, see `MetricBodies`) follow the move, and once they do,
    // every later answer is the new one: a prepared body is never served past its snapshot.
    let new_price = moved.get("btc-usd").unwrap().price;
    eventually("the node to serve the moved price", || async {
        let v: Value = h
            .get(&node.url("/v1/metrics/kraken:btc-usd:price"))
            .await?
            .json()
            .await?;
        Ok((v["value"].as_f64() == Some(new_price)).then_some(()))
    })
    .await?;
    for _ in 0..50 {
        let v: Value = h
            .get(&node.url("/v1/metrics/kraken:btc-usd:price"))
            .await?
            .json()
            .await?;
        assert_eq!(v["value"].as_f64(), Some(new_price));
    }

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
    node.component.stop().await;
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
