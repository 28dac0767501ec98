//! Delivery: the outbox's due messages, each sent on its channel, at least once.
//!
//! **Schedule** (Standard Webhooks): an attempt at once, then after 5 s, 5 min, 30 min, 2 h,
//! 5 h, 10 h, 14 h, 20 h and 24 h, each delay with ±10 % jitter; a `Retry-After` longer than
//! the next delay is honoured (up to 24 h). After the tenth failure the message is `failed`.
//! A 410 Gone disables the channel (and its pending messages). Every attempt of a message
//! carries the same `webhook-id` (the message id) and body; its timestamp and signature are
//! the attempt's own.
//!
//! An attempt's outcome is stored before the message is looked at again, so a process killed
//! during an attempt tries it again when it is back: at least once, never lost. Receivers
//! tell a repeat by its `webhook-id`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::AsyncTransport as _;
use rand::Rng as _;
use topcoins_history::{AlertStore, Attempt, Channel, Message, Next, Store};
use topcoins_schemas::alert::AlertBody;

use crate::metrics::AlertsMetrics;
use crate::sign;

/// Seconds after attempt 1, 2, … before the next (the Standard Webhooks schedule).
pub const SCHEDULE_S: [u64; 9] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];
/// Messages delivered at once, at most.
const CONCURRENCY: usize = 32;
/// Due messages read per look at the outbox.
const BATCH: usize = 64;
/// How often the outbox is looked at when nothing wakes the deliverer.
const POLL: Duration = Duration::from_millis(500);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The NATS subject of a user's alerts.
pub fn subject(user_id: &str) -> String {
    format!("topcoins.v1.alerts.{user_id}")
}

/// The SMTP server alerts are e-mailed through.
#[derive(Clone)]
pub struct Smtp {
    pub transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    pub from: lettre::message::Mailbox,
}

/// What the deliverer needs.
#[derive(Clone)]
pub struct Deliverer {
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    pub nats: async_nats::Client,
    pub smtp: Option<Smtp>,
    pub metrics: AlertsMetrics,
    /// How long one attempt may take (`TOPCOINS_ALERTS_DELIVERY_TIMEOUT`): a claimed message
    /// is due again this long (and a little) after its claim, should the attempt never end.
    pub timeout: Duration,
}

/// What a claim adds to the attempt's own timeout: the time to store its outcome.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// One attempt's result, before it is classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub status_code: Option<i32>,
    pub outcome: String,
    pub ok: bool,
    /// The endpoint is gone (410).
    pub gone: bool,
    /// A permanent refusal that no retry changes (an SMTP 5xx, a channel that cannot work).
    pub permanent: bool,
    pub retry_after: Option<Duration>,
}

impl Sent {
    fn failed(outcome: impl Into<String>) -> Self {
        Sent {
            status_code: None,
            outcome: outcome.into(),
            ok: false,
            gone: false,
            permanent: false,
            retry_after: None,
        }
    }
}

/// What attempt number `attempt` (1-based) leaves the message as, at `now` (Unix ms).
pub fn next_after(attempt: i32, sent: &Sent, now: i64, jitter: f64) -> Next {
    if sent.ok {
        return Next::Delivered;
    }
    if sent.gone {
        return Next::Disabled;
    }
    if sent.permanent {
        return Next::Failed;
    }
    let Some(delay) = usize::try_from(attempt - 1)
        .ok()
        .and_then(|i| SCHEDULE_S.get(i))
    else {
        return Next::Failed;
    };
    let mut ms = (*delay as f64 * 1000.0 * (1.0 + jitter.clamp(-0.1, 0.1))) as i64;
    if let Some(asked) = sent.retry_after {
        ms = ms.max(asked.min(MAX_RETRY_AFTER).as_millis() as i64);
    }
    Next::Retry(now + ms)
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn now_ms() -> i64 {
    crate::now_ms()
}

impl Deliverer {
    /// Delivers due messages until `shutdown`; `wake` says a decision was just committed.
    pub async fn run(self, wake: Arc<tokio::sync::Notify>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let now = now_ms();
            match self.store.due_messages(now, BATCH).await {
                Ok(due) => {
                    for (message, channel) in due {
                        if !in_flight
                            .lock()
                            .expect("not poisoned")
                            .insert(message.id.clone())
                        {
                            continue;
                        }
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        // Taken for this attempt in the database: a row read before another
                        // attempt of it ended (its outcome stored, its count moved on) is
                        // not sent again.
                        let now = now_ms();
                        let until = now + (self.timeout + CLAIM_MARGIN).as_millis() as i64;
                        match self
                            .store
                            .claim(&message.id, message.attempts, now, until)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => {
                                in_flight.lock().expect("not poisoned").remove(&message.id);
                                continue;
                            }
                            Err(e) => {
                                in_flight.lock().expect("not poisoned").remove(&message.id);
                                self.metrics.db_errors.with_label_values(&["claim"]).inc();
                                tracing::warn!(error = %e, "alerts: message not claimed; retrying");
                                continue;
                            }
                        }
                        let this = self.clone();
                        let in_flight = in_flight.clone();
                        tasks.spawn(async move {
                            let id = message.id.clone();
                            this.attempt(message, channel).await;
                            in_flight.lock().expect("not poisoned").remove(&id);
                            drop(slot);
                        });
                    }
                }
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["due"]).inc();
                    tracing::warn!(error = %e, "alerts: outbox not read; retrying");
                }
            }
            if let Ok((n, _)) = self.store.pending().await {
                self.metrics
                    .pending
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Attempts under way finish (their outcome stored) or are cut after their timeout and
        // the time to store an outcome; one cut is tried again once its claim lapses.
        let _ = tokio::time::timeout(
            self.timeout + CLAIM_MARGIN + Duration::from_secs(2),
            async { while tasks.join_next().await.is_some() {} },
        )
        .await;
    }

    /// One attempt of `message`, and its outcome stored.
    pub async fn attempt(&self, message: Message, channel: Channel) {
        let number = message.attempts + 1;
        let started = now_ms();
        let sent = self.send(&message, &channel, started).await;
        let next = next_after(
            number,
            &sent,
            now_ms(),
            rand::rng().random_range(-0.1..=0.1),
        );
        let label = match next {
            Next::Delivered => "delivered",
            Next::Retry(_) => "retry",
            Next::Failed => "failed",
            Next::Disabled => "disabled",
        };
        self.metrics
            .deliveries
            .with_label_values(&[channel.kind.as_str(), label])
            .inc();
        match next {
            Next::Delivered => {
                tracing::info!(message = %message.id, channel = %channel.kind, attempt = number, "alert delivered")
            }
            _ => {
                tracing::warn!(message = %message.id, channel = %channel.kind, attempt = number, outcome = %sent.outcome, next = ?next, "alert not delivered")
            }
        }
        let attempt = Attempt {
            message_id: message.id.clone(),
            attempt: number,
            time: started,
            status_code: sent.status_code,
            outcome: sent.outcome.clone(),
        };
        for wait in [0, 200, 1000, 5000] {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            match self
                .store
                .record_attempt(attempt.clone(), &channel.id, next)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.db_errors.with_label_values(&["attempt"]).inc();
                    tracing::warn!(message = %message.id, error = %e, "alerts: attempt not stored; retrying");
                }
            }
        }
        // Not stored: the message is still due, and is tried again (at least once).
    }

    async fn send(&self, message: &Message, channel: &Channel, now: i64) -> Sent {
        match channel.kind.as_str() {
            "webhook" => {
                let timestamp = now / 1000;
                let mut secrets = vec![channel.secret.as_str()];
                if let (Some(previous), Some(until)) =
                    (&channel.previous_secret, channel.previous_until)
                    && until > now
                {
                    secrets.push(previous.as_str());
                }
                let signature =
                    sign::header(&secrets, &message.id, timestamp, message.body.as_bytes());
                let request = self
                    .http
                    .post(&channel.target)
                    .header("content-type", "application/json")
                    .header("webhook-id", &message.id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(message.body.clone());
                self.http_send(request).await
            }
            "slack" => {
                let text = serde_json::from_str::<AlertBody>(&message.body)
                    .map(|b| b.text())
                    .unwrap_or_else(|_| message.body.clone());
                let request = self
                    .http
                    .post(&channel.target)
                    .json(&serde_json::json!({ "text": text }));
                self.http_send(request).await
            }
            "nats" => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("webhook-id", message.id.as_str());
                let published = self
                    .nats
                    .publish_with_headers(
                        subject(&message.user_id),
                        headers,
                        bytes::Bytes::from(message.body.clone()),
                    )
                    .await;
                match published {
                    Ok(()) => match self.nats.flush().await {
                        Ok(()) => Sent {
                            ok: true,
                            ..Sent::failed("delivered")
                        },
                        Err(e) => Sent::failed(format!("nats flush: {e}")),
                    },
                    Err(e) => Sent::failed(format!("nats publish: {e}")),
                }
            }
            "email" => self.email(message, channel).await,
            other => Sent {
                permanent: true,
                ..Sent::failed(format!("unknown channel kind {other:?}"))
            },
        }
    }

    async fn http_send(&self, request: reqwest::RequestBuilder) -> Sent {
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let retry = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                Sent {
                    status_code: Some(i32::from(status.as_u16())),
                    outcome: if status.is_success() {
                        "delivered".to_owned()
                    } else {
                        format!("http {}", status.as_u16())
                    },
                    ok: status.is_success(),
                    gone: status == reqwest::StatusCode::GONE,
                    permanent: false,
                    retry_after: retry,
                }
            }
            Err(e) => Sent::failed(if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                format!("request failed: {e}")
            }),
        }
    }

    async fn email(&self, message: &Message, channel: &Channel) -> Sent {
        let Some(smtp) = &self.smtp else {
            // Not a failure a retry mends: said at once, in the attempt's outcome.
            return Sent {
                permanent: true,
                ..Sent::failed("no SMTP server configured (TOPCOINS_SMTP_URL)")
            };
        };
        let body = serde_json::from_str::<AlertBody>(&message.body).ok();
        let count = body.as_ref().map_or(1, |b| b.all().len());
        let subject = match body.as_ref().map(|b| b.kind.as_str()) {
            Some("alert.resolved") => format!("topcoins: {count} alert(s) resolved"),
            Some("alert.test") => "topcoins: test alert".to_owned(),
            _ => format!("topcoins: {count} alert(s)"),
        };
        let text = format!(
            "{}\n\nwebhook-id: {}\n\n{}\n",
            body.as_ref().map(AlertBody::text).unwrap_or_default(),
            message.id,
            message.body
        );
        let to = match channel.target.parse::<lettre::message::Mailbox>() {
            Ok(to) => to,
            Err(e) => {
                return Sent {
                    permanent: true,
                    ..Sent::failed(format!("bad address: {e}"))
                };
            }
        };
        let email = lettre::Message::builder()
            .from(smtp.from.clone())
            .to(to)
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(text);
        let email = match email {
            Ok(e) => e,
            Err(e) => {
                return Sent {
                    permanent: true,
                    ..Sent::failed(format!("e-mail not built: {e}"))
                };
            }
        };
        match smtp.transport.send(email).await {
            Ok(response) => Sent {
                status_code: Some(i32::from(u16::from(response.code()))),
                ok: true,
                ..Sent::failed("delivered")
            },
            Err(e) => Sent {
                status_code: e.status().map(|c| i32::from(u16::from(c))),
                permanent: e.is_permanent(),
                ..Sent::failed(format!("smtp: {e}"))
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Sent {
        Sent::failed("http 503")
    }

    #[test]
    fn the_standard_webhooks_schedule_then_failed() {
        let mut at = 0;
        let mut delays = Vec::new();
        for attempt in 1..=10 {
            match next_after(attempt, &failed(), at, 0.0) {
                Next::Retry(next) => {
                    delays.push((next - at) / 1000);
                    at = next;
                }
                Next::Failed => {
                    assert_eq!(attempt, 10);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            delays,
            [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
        );
        // Jitter stays within 10 %.
        let Next::Retry(at) = next_after(2, &failed(), 0, 0.5) else {
            panic!()
        };
        assert_eq!(at, 330_000);
    }

    #[test]
    fn retry_after_gone_and_success() {
        let asked = Sent {
            retry_after: Some(Duration::from_secs(60)),
            ..failed()
        };
        assert_eq!(next_after(1, &asked, 0, 0.0), Next::Retry(60_000));
        let huge = Sent {
            retry_after: Some(Duration::from_secs(10 * 86400)),
            ..failed()
        };
        assert_eq!(next_after(1, &huge, 0, 0.0), Next::Retry(86_400_000));
        let gone = Sent {
            gone: true,
            ..failed()
        };
        assert_eq!(next_after(1, &gone, 0, 0.0), Next::Disabled);
        let ok = Sent {
            ok: true,
            ..failed()
        };
        assert_eq!(next_after(3, &ok, 0, 0.0), Next::Delivered);
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 09 Sep 2001 01:48:40 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
