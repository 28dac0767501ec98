//! Alerts end to end (issue 13): a real nats-server, `topcoins alerts` and an API node on a
//! SQLite database, a real HTTP receiver that checks every webhook's signature on its own
//! (HMAC-SHA256 as the Standard Webhooks specification says, checked against its test
//! vector), a NATS subscriber, and a local SMTP sink (Python's aiosmtpd). The metric's values
//! are Binance ticker snapshots this test publishes itself, so it decides every sample.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::{Component, Harness, eventually};
use futures::StreamExt as _;
use hmac::Mac as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use topcoins_api::ApiConfig;
use topcoins_bus::{SnapshotStore, TraceContext};
use topcoins_history::{DatabaseUrl, Record, RecordStore as _, Store};
use topcoins_schemas::ticker::{Binance, PairTicker, TICKER_KINDS, TickerSnapshot, TickerWindow};
use topcoins_schemas::{HashNotice, Snapshot as _};

const ADMIN: &str = "admin-secret-for-alert-tests";
const METRIC: &str = "binance:btc-usdt:volume";
const SEC: i64 = 1000;

/// What a receiver got: headers and body of every request, whatever it answered.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String, u16)>>>,
    /// What it answers: 200, 503 (down) or 410 (gone).
    answer: Arc<Mutex<u16>>,
}

impl Receiver {
    fn set(&self, status: u16) {
        *self.answer.lock().unwrap() = status;
    }
    fn got(&self) -> Vec<(HeaderMap, String, u16)> {
        self.got.lock().unwrap().clone()
    }
    fn delivered(&self) -> Vec<(HeaderMap, String)> {
        self.got()
            .into_iter()
            .filter(|(_, _, s)| *s == 200)
            .map(|(h, b, _)| (h, b))
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let status = *r.answer.lock().unwrap();
    r.got.lock().unwrap().push((headers, body, status));
    StatusCode::from_u16(status).unwrap()
}

async fn start_receiver() -> Result<(SocketAddr, Receiver)> {
    let r = Receiver::default();
    r.set(200);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/slack", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, r))
}

/// The receiver's own check of a Standard Webhooks signature (not the product's code).
fn verified(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| b64.decode(k).ok())
    else {
        return false;
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signed = format!("{}.{}.{}", h("webhook-id"), h("webhook-timestamp"), body);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    h("webhook-signature").split(' ').any(|s| s == expected)
}

#[test]
fn the_receivers_check_passes_the_specifications_test_vector() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
    );
    headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
    headers.insert(
        "webhook-signature",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            .parse()
            .unwrap(),
    );
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verified(secret, &headers, r#"{"test": 2432232314}"#));
    assert!(!verified(secret, &headers, r#"{"test": 2432232315}"#));
}

struct Setup {
    h: Harness,
    node: common::ApiNode,
    alerts: Option<Component>,
    store: SnapshotStore,
    database: DatabaseUrl,
    registry: prometheus::Registry,
    /// The time of the next sample this test publishes.
    next: Mutex<i64>,
    _dir: tempfile::TempDir,
}

fn start_alerts(
    h: &Harness,
    database: &DatabaseUrl,
    registry: &prometheus::Registry,
    smtp: Option<String>,
) -> Component {
    let (database, nats, registry) = (database.clone(), h.nats_config("alerts"), registry.clone());
    let config = topcoins_alerts::AlertsConfig {
        smtp_url: smtp,
        delivery_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    Component::spawn(move |s| {
        Box::pin(topcoins_alerts::run(
            config,
            database,
            nats,
            registry,
            s.wait(),
        ))
    })
}

impl Setup {
    async fn start(smtp: Option<String>) -> Result<Setup> {
        let h = Harness::start(50).await?;
        let dir = tempfile::tempdir()?;
        let database = DatabaseUrl::Sqlite(dir.path().join("history.db"));
        let now = OffsetDateTime::now_utc().unix_timestamp() * SEC;
        // The last minute of the metric, one sample a second, as the recorder keeps them: the
        // alerts process reads its window from these at start.
        {
            let db = Store::open(&database).await?;
            use topcoins_history::CandleStore as _;
            db.migrate().await?;
            let records: Vec<Record> = (1..=60)
                .map(|i| Record {
                    metric: METRIC.into(),
                    time: now - (61 - i) * SEC,
                    value: 100.0,
                })
                .collect();
            db.write_records(records).await?;
        }
        let registry = prometheus::Registry::new();
        let alerts = start_alerts(&h, &database, &registry, smtp);
        let node = h
            .start_api_with(ApiConfig {
                database_url: Some(database.clone()),
                admin_key: Some(ADMIN.to_owned()),
                ..ApiConfig::default()
            })
            .await?;
        let (client, _) = topcoins_bus::connect(&h.nats_config("test-publisher")).await?;
        let store = SnapshotStore::open(client).await?;
        store.ensure_kinds(&TICKER_KINDS).await?;
        let s = Setup {
            h,
            node,
            alerts: Some(alerts),
            store,
            database,
            registry,
            next: Mutex::new(now),
            _dir: dir,
        };
        s.publish(100.0).await?;
        eventually("the metric on the API node", || async {
            let r =
                s.h.get(&s.node.url(&format!("/v1/metrics/{METRIC}")))
                    .await?;
            Ok((r.status() == 200).then_some(()))
        })
        .await?;
        Ok(s)
    }

    /// One poll of Binance: the metric at `volume`, a second after the last sample.
    async fn publish(&self, volume: f64) -> Result<()> {
        let at = {
            let mut next = self.next.lock().unwrap();
            let at = *next;
            *next += SEC;
            at
        };
        let ticker = PairTicker {
            pair: "btc-usdt".into(),
            // A price of its own makes each poll's hash new.
            price: 50_000.0 + (at / SEC % 1000) as f64,
            high: 51_000.0,
            low: 49_000.0,
            change_pct: 1.0,
            change_abs: 500.0,
            volume,
            volume_quote: volume * 50_000.0,
            window: TickerWindow::Rolling24h,
            change_window: TickerWindow::Rolling24h,
        };
        let snapshot = TickerSnapshot::<Binance>::new(vec![ticker])?;
        let (bytes, hash) = snapshot.encode();
        let kind = TICKER_KINDS[2];
        self.store.put_kind(kind, hash, &bytes).await?;
        let notice = HashNotice {
            hash,
            as_of: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)?,
            count: 1,
            source: "binance".into(),
            follows: None,
        };
        self.store
            .announce(kind, &notice, &TraceContext::default())
            .await?;
        Ok(())
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut r = self
            .h
            .http
            .request(method, self.node.url(path))
            .bearer_auth(key);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = tokio::time::timeout(common::WAIT, r.send()).await??;
        let status = r.status().as_u16();
        let text = r.text().await?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| text.clone())?
        };
        Ok((status, v))
    }

    async fn user(&self) -> Result<(String, String)> {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/users",
                ADMIN,
                Some(json!({"name": "alice"})),
            )
            .await?;
        anyhow::ensure!(status == 201, "{status} {body}");
        Ok((
            body["id"].as_str().context("id")?.to_owned(),
            body["api_key"].as_str().context("key")?.to_owned(),
        ))
    }

    async fn rule(&self, key: &str, body: Value) -> Result<Value> {
        let (status, v) = self
            .send(reqwest::Method::POST, "/v1/alerts/rules", key, Some(body))
            .await?;
        anyhow::ensure!(status == 201, "rule: {status} {v}");
        Ok(v)
    }

    /// Waits until the alerts process evaluates `n` rules.
    async fn rules_loaded(&self, n: f64) -> Result<()> {
        eventually("the rules in the alerts process", || async {
            Ok((common::metric(&self.registry, "topcoins_alert_rules", &[]) == n).then_some(()))
        })
        .await
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A spike of 5× a steady metric: exactly one alert in the window, with the value and the
/// average, signed with the rule's secret; a second spike in the window: none; bad rules
/// refused with the JSON error shape; a receiver down for a while gets the alert once it is
/// back (same `webhook-id` on every attempt); an alerts process killed with a delivery
/// pending delivers it when it is back, once; a 410 disables the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_spike_once_retry_survive_a_kill_and_stop_on_gone() -> Result<()> {
    let mut s = Setup::start(None).await?;
    let (addr, receiver) = start_receiver().await?;
    let (_user, key) = s.user().await?;
    let hook = format!("http://{addr}/hook");

    // Bad rules: each refused with its code, never a 5xx.
    let good = json!({"metric": METRIC, "condition": {"type": "above_average", "factor": 3, "window": "1m"}, "channel": {"type": "webhook", "url": hook}});
    let mut bad = Vec::new();
    for (patch, want, want_status) in [
        (
            json!({"metric": "binance:doge-usdt:volume"}),
            "unknown_metric",
            404,
        ),
        (
            json!({"metric": "coin:NOSUCHCOIN:price"}),
            "unknown_metric",
            404,
        ),
        (json!({"metric": "nonsense"}), "invalid_metric_id", 400),
        (
            json!({"condition": {"type": "above_average", "factor": 0, "window": "1m"}}),
            "invalid_factor",
            400,
        ),
        (
            json!({"condition": {"type": "above_average", "factor": 3, "window": "30s"}}),
            "invalid_window",
            400,
        ),
        (
            json!({"condition": {"type": "above_average", "factor": 3, "window": "8d"}}),
            "invalid_window",
            400,
        ),
        (
            json!({"channel": {"type": "webhook", "url": "ftp://example.com/x"}}),
            "invalid_url",
            400,
        ),
        (
            json!({"channel": {"type": "email", "to": "nobody"}}),
            "invalid_address",
            400,
        ),
        (
            json!({"condition": {"type": "sometimes"}}),
            "invalid_body",
            400,
        ),
        (
            json!({"condition": {"type": "above_average", "window": "1h"}}),
            "invalid_body",
            400,
        ),
    ] {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = s
            .send(reqwest::Method::POST, "/v1/alerts/rules", &key, Some(body))
            .await?;
        if status != want_status || code(&v) != want {
            bad.push(format!("{patch}: {status} {v}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    let (status, _) = s
        .send(
            reqwest::Method::GET,
            "/v1/alerts/rules",
            "tck_nosuchkey",
            None,
        )
        .await?;
    assert_eq!(status, 401);

    let created = s.rule(&key, good.clone()).await?;
    let secret = created["secret"].as_str().context("secret")?.to_owned();
    assert!(secret.starts_with("whsec_"));
    let rule_id = created["id"].as_str().context("id")?.to_owned();
    s.rules_loaded(1.0).await?;

    // Steady, then 5×: one alert.
    for _ in 0..3 {
        s.publish(100.0).await?;
    }
    s.publish(500.0).await?;
    let got = eventually("the spike's webhook", || async {
        let d = receiver.delivered();
        Ok((!d.is_empty()).then_some(d))
    })
    .await?;
    let (headers, body) = &got[0];
    assert!(verified(&secret, headers, body), "signature: {headers:?}");
    let v: Value = serde_json::from_str(body)?;
    assert_eq!(v["type"], "alert.fired");
    assert_eq!(v["data"]["rule_id"], rule_id.as_str());
    assert_eq!(v["data"]["metric"], METRIC);
    assert_eq!(v["data"]["value"], 500.0);
    assert_eq!(v["data"]["average"], 100.0);
    assert_eq!(v["data"]["factor"], 3.0);
    assert_eq!(v["data"]["window"], "1m");

    // A second spike in the same window: nothing.
    s.publish(100.0).await?;
    s.publish(600.0).await?;
    s.publish(100.0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.got().len(), 1, "a second alert in the window");

    // What fired, with its delivery.
    let (status, alerts) = s
        .send(reqwest::Method::GET, "/v1/alerts", &key, None)
        .await?;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts["data"].as_array().map(Vec::len), Some(1), "{alerts}");
    let a = &alerts["data"][0];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["value"].as_f64(),
            a["average"].as_f64()
        ),
        (Some("fired"), Some(500.0), Some(100.0))
    );
    assert_eq!(a["delivery"]["status"], "delivered");
    assert_eq!(a["delivery"]["attempts"][0]["status_code"], 200);

    // The receiver down for a while: the test alert arrives after it is back, at the 5 s retry,
    // with the same webhook-id as the failed attempt.
    receiver.set(503);
    let (status, fired) = s
        .send(
            reqwest::Method::POST,
            &format!("/v1/alerts/rules/{rule_id}/test"),
            &key,
            None,
        )
        .await?;
    assert_eq!(status, 202, "{fired}");
    let message_id = fired["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();
    eventually("a failed attempt", || async {
        Ok((receiver.got().len() >= 2).then_some(()))
    })
    .await?;
    receiver.set(200);
    eventually("the retried delivery", || async {
        Ok((receiver.delivered().len() == 2).then_some(()))
    })
    .await?;
    let attempts: Vec<(String, u16)> = receiver.got()[1..]
        .iter()
        .map(|(h, _, st)| (h["webhook-id"].to_str().unwrap().to_owned(), *st))
        .collect();
    assert_eq!(
        attempts,
        [(message_id.clone(), 503), (message_id.clone(), 200)]
    );
    for (h, b, _) in receiver.got() {
        assert!(verified(&secret, &h, &b), "every attempt is signed");
    }

    // `topcoins alerts` as a process of its own, SIGKILLed with a delivery pending (the
    // receiver down), started again: the message is delivered, once.
    s.alerts.take().context("alerts")?.stop().await;
    let spawn = || -> Result<(tokio::process::Child, common::Logs)> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_topcoins"));
        command
            .arg("alerts")
            .env("NATS_URL", s.h.nats.url())
            .env("TOPCOINS_DATABASE_URL", s.database.to_string())
            // A message whose attempt was cut by the kill before its outcome was stored is due
            // again when its claim lapses: the timeout and 5 s.
            .env("TOPCOINS_ALERTS_DELIVERY_TIMEOUT", "2s")
            .env("RUST_LOG", "info");
        common::Logs::spawn(&mut command)
    };
    let (mut child, mut logs) = spawn()?;
    logs.event("alerts: database and NATS ready").await?;
    receiver.set(503);
    let before = receiver.got().len();
    let (_, fired) = s
        .send(
            reqwest::Method::POST,
            &format!("/v1/alerts/rules/{rule_id}/test"),
            &key,
            None,
        )
        .await?;
    let pending_id = fired["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();
    eventually("the first attempt", || async {
        Ok((receiver.got().len() > before).then_some(()))
    })
    .await?;
    child.kill().await.context("SIGKILL")?;
    receiver.set(200);
    let (mut child, mut logs) = spawn()?;
    logs.event("alerts: database and NATS ready").await?;
    eventually("the pending delivery after the restart", || async {
        Ok(receiver
            .delivered()
            .iter()
            .any(|(h, _)| h["webhook-id"] == pending_id.as_str())
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copies = receiver
        .delivered()
        .iter()
        .filter(|(h, _)| h["webhook-id"] == pending_id.as_str())
        .count();
    assert_eq!(copies, 1);
    child.kill().await.context("SIGKILL")?;
    let registry = prometheus::Registry::new();
    s.alerts = Some(start_alerts(&s.h, &s.database, &registry, None));

    // Rotation: both signatures while the old one is in its grace.
    let (status, rotated) = s
        .send(
            reqwest::Method::POST,
            &format!("/v1/alerts/rules/{rule_id}/secret"),
            &key,
            None,
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().context("secret")?.to_owned();
    let n = receiver.delivered().len();
    s.send(
        reqwest::Method::POST,
        &format!("/v1/alerts/rules/{rule_id}/test"),
        &key,
        None,
    )
    .await?;
    let (h, b) = eventually("the test after rotation", || async {
        Ok(receiver.delivered().get(n).cloned())
    })
    .await?;
    assert!(
        verified(&new_secret, &h, &b) && verified(&secret, &h, &b),
        "both secrets sign"
    );

    // 410: the channel is disabled, and says so.
    receiver.set(410);
    s.send(
        reqwest::Method::POST,
        &format!("/v1/alerts/rules/{rule_id}/test"),
        &key,
        None,
    )
    .await?;
    eventually("the channel disabled", || async {
        let (_, rules) = s
            .send(reqwest::Method::GET, "/v1/alerts/rules", &key, None)
            .await?;
        Ok(rules["data"][0]["channel"]["disabled"]
            .is_i64()
            .then_some(()))
    })
    .await?;
    let (status, v) = s
        .send(
            reqwest::Method::POST,
            &format!("/v1/alerts/rules/{rule_id}/test"),
            &key,
            None,
        )
        .await?;
    assert_eq!((status, code(&v)), (409, "channel_disabled"));
    let (status, _) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/alerts/rules/{rule_id}"),
            &key,
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, v) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/alerts/rules/{rule_id}"),
            &key,
            None,
        )
        .await?;
    assert_eq!((status, code(&v)), (404, "unknown_rule"));
    if let Some(a) = s.alerts.take() {
        a.stop().await;
    }
    Ok(())
}

/// Slack gets a readable text; NATS subscribers get the body on `topcoins.v1.alerts.<user>`;
/// an SMTP server gets the e-mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_nats_and_email_channels() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let python = std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut sink = tokio::process::Command::new(&python)
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("the SMTP sink (python3 -m aiosmtpd; scripts/test installs it)")?;
    let mut out = sink.stdout.take().context("stdout")?;
    let mail = Arc::new(Mutex::new(String::new()));
    {
        let mail = mail.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                mail.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    eventually("the SMTP sink listening", || async {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    let s = Setup::start(Some(format!("smtp://127.0.0.1:{port}"))).await?;
    let (addr, receiver) = start_receiver().await?;
    let (user, key) = s.user().await?;
    let (client, _) = topcoins_bus::connect(&s.h.nats_config("subscriber")).await?;
    let mut sub = client
        .subscribe(format!("topcoins.v1.alerts.{user}"))
        .await?;
    client.flush().await?;
    let cond = json!({"type": "price_above", "threshold": 10});
    let slack = s.rule(&key, json!({"metric": METRIC, "condition": cond, "channel": {"type": "slack", "url": format!("http://{addr}/slack")}})).await?;
    let nats = s
        .rule(
            &key,
            json!({"metric": METRIC, "condition": cond, "channel": {"type": "nats"}}),
        )
        .await?;
    let email = s.rule(&key, json!({"metric": METRIC, "condition": cond, "channel": {"type": "email", "to": "ops@example.com"}})).await?;
    s.rules_loaded(3.0).await?;
    // The user's live stream (no prices: `symbols=` names none) gets every alert, whatever
    // its channel; another user's gets none of them.
    let mut live =
        s.h.http
            .get(s.node.url("/v1/stream?symbols="))
            .bearer_auth(&key)
            .send()
            .await?;
    assert_eq!(live.status(), 200);
    let (_, other_key) = s.user().await?;
    let mut other =
        s.h.http
            .get(s.node.url("/v1/stream?symbols="))
            .bearer_auth(&other_key)
            .send()
            .await?;
    assert_eq!(other.status(), 200);
    s.publish(100.0).await?;

    let ids = [&slack, &nats, &email].map(|r| r["id"].as_str().unwrap().to_owned());
    let mut streamed = String::new();
    tokio::time::timeout(common::WAIT, async {
        while !ids.iter().all(|id| streamed.contains(id.as_str())) {
            let chunk = live.chunk().await?.context("stream ended")?;
            streamed.push_str(&String::from_utf8_lossy(&chunk));
        }
        anyhow::Ok(())
    })
    .await
    .context("the alerts on the user's stream")??;
    assert_eq!(streamed.matches("event: alert").count(), 3, "{streamed}");
    assert!(streamed.contains("\"kind\":\"fired\""), "{streamed}");
    let mut theirs = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(300), other.chunk()).await
    {
        theirs.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!theirs.contains("event: alert"), "{theirs}");

    let (_, text) = eventually("the Slack message", || async {
        Ok(receiver.delivered().first().cloned())
    })
    .await?;
    let v: Value = serde_json::from_str(&text)?;
    let t = v["text"].as_str().context("text")?;
    assert!(
        t.contains(METRIC) && t.contains("100") && t.contains(slack["id"].as_str().unwrap()),
        "{t}"
    );

    let m = tokio::time::timeout(common::WAIT, sub.next())
        .await?
        .context("nats")?;
    let v: Value = serde_json::from_slice(&m.payload)?;
    assert_eq!(v["type"], "alert.fired");
    assert_eq!(v["data"]["rule_id"], nats["id"]);
    assert_eq!(v["data"]["value"], 100.0);
    assert!(
        m.headers
            .as_ref()
            .and_then(|h| h.get("webhook-id"))
            .is_some()
    );

    eventually("the e-mail", || async {
        let text = mail.lock().unwrap().clone();
        Ok(
            (text.contains("ops@example.com") && text.contains(email["id"].as_str().unwrap()))
                .then_some(()),
        )
    })
    .await?;
    let text = mail.lock().unwrap().clone();
    assert!(text.contains("Subject: topcoins: 1 alert(s)"), "{text}");

    // A coin's price (`coin:<SYMBOL>:price`), from the price snapshots: the actors on the
    // simulator, a rule once BTC is in the top list, an alert on the next snapshot that
    // changes.
    let _price = s.h.start_price(common::POLL);
    let _ranking = s.h.start_ranking(common::POLL);
    eventually("BTC in the top list", || async {
        let r = s.h.get(&s.node.url("/v1/coins/BTC")).await?;
        Ok((r.status() == 200).then_some(()))
    })
    .await?;
    let coin = s
        .rule(
            &key,
            json!({"metric": "coin:btc:price", "condition": {"type": "price_above", "threshold": 0}, "channel": {"type": "nats"}}),
        )
        .await?;
    assert_eq!(
        coin["metric"], "coin:BTC:price",
        "the symbol in its canonical case"
    );
    s.rules_loaded(4.0).await?;
    // Prices are sampled when they change (a price snapshot has no still-current notice):
    // the market moves.
    s.h.tick().await?;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await?
            .context("nats")?;
        let v: Value = serde_json::from_slice(&m.payload)?;
        if v["data"]["rule_id"] == coin["id"] {
            assert_eq!(v["data"]["metric"], "coin:BTC:price");
            assert!(v["data"]["value"].as_f64().is_some_and(|p| p > 0.0), "{v}");
            break;
        }
    }
    Ok(())
}
