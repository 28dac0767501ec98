//! `/openapi.json`: an OpenAPI 3 document that describes exactly the routes the node serves,
//! served with a strong ETag and counted like every other route. Against a real nats-server,
//! with no actors: the node has no data, which every route must still describe.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use prometheus::Registry;
use serde_json::Value;
use tokio::net::TcpListener;
use topcoins_api::ApiConfig;
use topcoins_api::http::ROUTES;

use common::get;
use topcoins_bus::NatsConfig;
use topcoins_testkit::NatsServer;

const WAIT: Duration = Duration::from_secs(20);

fn document(default_limit: usize, max_limit: usize) -> Value {
    let spec = topcoins_api::http::openapi(default_limit, max_limit);
    serde_json::from_slice(&spec.body).expect("/openapi.json is JSON")
}

#[test]
fn describes_every_route_and_nothing_else() {
    let doc = document(200, 5000);
    let version = doc["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "OpenAPI 3, got {version}");
    assert_eq!(doc["info"]["title"], "topcoins");
    let described: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = ROUTES.into_iter().collect();
    assert_eq!(
        described, served,
        "every route served must be described, and only those"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        let operations = item.as_object().unwrap();
        assert!(!operations.is_empty(), "{path}: an operation");
        for (method, op) in operations {
            assert!(
                ["get", "post", "delete"].contains(&method.as_str()),
                "{path}: {method}"
            );
            assert!(
                op["operationId"].is_string(),
                "{path} {method}: an operationId"
            );
            assert!(
                ["200", "201", "202", "204"]
                    .iter()
                    .any(|s| op["responses"][s].is_object()),
                "{path} {method}: a success"
            );
        }
    }
}

#[test]
fn describes_the_bodies_and_errors() {
    let doc = document(200, 5000);
    let schemas = &doc["components"]["schemas"];
    for name in [
        "TopResponse",
        "TopEntry",
        "TopMeta",
        "ErrorBody",
        "ErrorDetail",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    let entry = &schemas["TopEntry"];
    let required: BTreeSet<&str> = entry["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in ["rank", "symbol", "name", "price_usd", "price_source"] {
        assert!(required.contains(field), "TopEntry.{field} is required");
    }
    assert!(
        entry["properties"]["price_usd"]["type"]
            .as_array()
            .is_some_and(|t| t.contains(&"null".into())),
        "price_usd is nullable: {}",
        entry["properties"]["price_usd"]
    );
    let top = &doc["paths"]["/"]["get"];
    let content = &top["responses"]["200"]["content"];
    assert!(content["application/json"].is_object() && content["text/csv"].is_object());
    for status in ["400", "414", "503"] {
        assert_eq!(
            top["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "GET / {status}"
        );
    }
    assert!(top["responses"]["304"].is_object());
    assert_eq!(top["responses"]["200"]["headers"]["ETag"]["required"], true);
}

#[test]
fn limit_bounds_are_the_nodes() {
    let doc = document(50, 700);
    let limit = doc["paths"]["/"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("a limit parameter");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 700);
    assert_eq!(limit["schema"]["default"], 50);
}

fn requests(registry: &Registry, route: &str, status: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "topcoins_http_requests_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            let label = |name: &str| m.get_label().iter().find(|l| l.name() == name);
            label("route").is_some_and(|l| l.value() == route)
                && label("status").is_some_and(|l| l.value() == status)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn served_with_an_etag_and_counted() -> Result<()> {
    let mut nats = NatsServer::start().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let registry = Registry::new();
    let config = ApiConfig::default();
    let expected = topcoins_api::http::openapi(config.default_limit, config.max_limit);
    let nats_config = NatsConfig {
        url: nats.url().to_owned(),
        name: "api".into(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(topcoins_api::run(
        config,
        nats_config,
        registry.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    // Every described route is served (not the fallback's 404), with one of the statuses its
    // description lists; the node has no data, so `/` and `/readyz` answer 503.
    let doc: Value = serde_json::from_slice(&expected.body)?;
    for route in ROUTES {
        // Its first described method (GET where there is one), without a body or a key.
        let method = doc["paths"][route]
            .as_object()
            .and_then(|ops| ops.keys().next().cloned())
            .context("an operation")?;
        // The stream never ends by itself (this reads until the server closes): asked for
        // twice the same parameter, it answers a described 400 at once.
        let path = if route == "/v1/stream" {
            "/v1/stream?symbols=a&symbols=b"
        } else {
            route
        };
        let answer = common::request(addr, &method.to_uppercase(), path, &[]).await?;
        let status = answer.status.to_string();
        assert!(
            doc["paths"][route][&method]["responses"][&status].is_object(),
            "{route} {method}: {status} is not described"
        );
        assert_eq!(requests(&registry, route, &status), 1.0, "{route} counted");
    }
    let answer = get(addr, "/openapi.json", &[]).await?;
    ensure!(answer.status == 200, "status {}", answer.status);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body, expected.body);
    let etag = answer.header("etag").context("an ETag")?.to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let again = get(addr, "/openapi.json", &[("If-None-Match", &etag)]).await?;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = get(addr, "/openapi.json", &[("If-None-Match", "\"other\"")]).await?;
    assert_eq!(other.status, 200);

    // `/dashboard/` is `/dashboard`.
    let slash = get(addr, "/dashboard/?x=1", &[]).await?;
    assert_eq!(slash.status, 308);
    assert_eq!(slash.header("location"), Some("/dashboard?x=1"));
    assert_eq!(requests(&registry, "/dashboard", "308"), 1.0);
    assert_eq!(get(addr, "/nope", &[]).await?.status, 404);
    assert_eq!(requests(&registry, "unmatched", "404"), 1.0);
    assert_eq!(requests(&registry, "/openapi.json", "200"), 3.0);
    assert_eq!(requests(&registry, "/openapi.json", "304"), 1.0);

    let _ = stop.send(());
    tokio::time::timeout(WAIT, node).await???;
    nats.stop().await;
    Ok(())
}

#[test]
fn describes_the_coin_and_candles_routes() {
    let doc = document(200, 5000);
    let schemas = &doc["components"]["schemas"];
    let required = |name: &str| -> BTreeSet<String> {
        schemas[name]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has required fields"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert!(required("TopEntry").contains("change_24h_pct"));
    for field in [
        "symbol",
        "name",
        "rank",
        "price_usd",
        "price_source",
        "change_24h_pct",
        "as_of",
    ] {
        assert!(
            required("CoinResponse").contains(field),
            "CoinResponse.{field}"
        );
    }
    for field in ["time", "open", "high", "low", "close", "volume"] {
        assert!(required("CandleRow").contains(field), "CandleRow.{field}");
    }
    assert!(required("CandlesMeta").contains("next_cursor"));
    let candles = &doc["paths"]["/v1/coins/{symbol}/candles"]["get"];
    let description = candles["description"].as_str().unwrap();
    assert!(description.contains("volumeto") && description.contains("24 h volume"));
    let interval = candles["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "interval")
        .expect("an interval parameter");
    assert_eq!(interval["required"], true);
    assert_eq!(
        interval["schema"]["enum"],
        serde_json::json!(["1m", "5m", "15m", "1h", "4h", "1d"])
    );
    for (path, statuses) in [
        (
            "/v1/coins/{symbol}/candles",
            &["400", "404", "414", "503"][..],
        ),
        ("/v1/coins/{symbol}", &["404", "503"][..]),
    ] {
        let op = &doc["paths"][path]["get"];
        for status in statuses {
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{path} {status}"
            );
        }
        assert_eq!(
            op["responses"]["200"]["headers"]["ETag"]["required"], true,
            "{path}"
        );
        assert!(op["responses"]["304"].is_object(), "{path}");
    }
}
