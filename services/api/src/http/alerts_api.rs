//! Alert rules and what fired: `POST|GET /v1/alerts/rules`, `DELETE /v1/alerts/rules/{id}`,
//! `POST /v1/alerts/rules/{id}/secret` (rotation), `POST /v1/alerts/rules/{id}/test`, and
//! `GET /v1/alerts`. Every one needs a key and sees only the caller's own (what is not
//! theirs is answered as not there). The rules are evaluated, and alerts delivered, by
//! `topcoins alerts`, which the node tells of each change over NATS.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use topcoins_history::{Alert, AlertStore, Channel, Decision, Message, Rotation, Rule};
use topcoins_schemas::alert::{
    AlertBody, AlertData, ChannelType, Condition, coin_metric_symbol, rfc3339_ms as rfc3339,
};
use topcoins_schemas::api::{
    AlertEntry, AlertsResponse, AttemptEntry, ChannelEntry, DeliveryEntry, ErrorBody, MetricsMeta,
    NewRule, RuleCreated, RuleEntry, RulesResponse, SecretRotated, TestFired,
};

use super::AppState;
use super::accounts_api::{body, caller, db, json, not_found, page_query};
use super::coins::percent_decoded;
use super::metrics_api::MetricId;
use crate::accounts::{Refused, new_id};
use crate::error::ApiError;
use crate::history::now_ms;
use crate::query::echo;

/// Rules a user may have.
pub const MAX_RULES_PER_USER: usize = 1000;
/// Rules and alerts a page holds by default and at most.
pub const RULES_DEFAULT_LIMIT: usize = 100;
pub const RULES_MAX_LIMIT: usize = 1000;
pub const ALERTS_DEFAULT_LIMIT: usize = 50;
pub const ALERTS_MAX_LIMIT: usize = 500;
/// How long a rotated secret keeps signing.
pub const ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;

/// The rule's metric, checked and in its canonical spelling: `400 invalid_metric_id` when it
/// is not `exchange:pair:metric` or `coin:SYMBOL:price`, `404 unknown_metric` when it is but
/// names no tracked metric or no coin of the top list.
fn checked_metric(app: &AppState, metric: &str) -> Result<String, ApiError> {
    if let Some(symbol) = coin_metric_symbol(metric) {
        let known = app
            .view
            .load_full()
            .is_some_and(|v| v.list.merged().find(symbol).is_some());
        if !known {
            return Err(not_found(
                "unknown_metric",
                format!("{:?} is not a coin of the top list (GET /)", echo(symbol)),
            ));
        }
        return Ok(format!("coin:{}:price", symbol.to_uppercase()));
    }
    match MetricId::parse(metric) {
        Some(id) if app.tickers.is_tracked(metric) => {
            Ok(format!("{}:{}:{}", id.exchange, id.pair, id.kind.as_str()))
        }
        Some(_) => Err(not_found(
            "unknown_metric",
            format!(
                "{:?} is not a tracked metric (GET /v1/metrics; add its pair to your watchlist first)",
                echo(metric)
            ),
        )),
        None => Err(ApiError::bad_request(
            "invalid_metric_id",
            format!(
                "metric must be exchange:pair:metric (kraken:btc-usd:volume) or coin:SYMBOL:price, got {:?}",
                echo(metric)
            ),
        )),
    }
}

fn channel_entry(c: &Channel) -> ChannelEntry {
    let kind = ChannelType::parse(&c.kind).unwrap_or(ChannelType::Webhook);
    let (url, to) = match kind {
        ChannelType::Webhook | ChannelType::Slack => (Some(c.target.clone()), None),
        ChannelType::Email => (None, Some(c.target.clone())),
        ChannelType::Nats => (None, None),
    };
    ChannelEntry {
        id: c.id.clone(),
        kind,
        url,
        to,
        disabled: c.disabled,
    }
}

fn rule_entry(r: &Rule, c: &Channel) -> RuleEntry {
    RuleEntry {
        id: r.id.clone(),
        metric: r.metric.clone(),
        // Stored by this node after `check`: it parses. A row that does not (written by a
        // later version, say) shows as what it is rather than failing the listing.
        condition: serde_json::from_str(&r.condition).unwrap_or(Condition::PriceAbove {
            threshold: 0.0,
            window: None,
            pending: None,
            notify_resolved: false,
        }),
        channel: channel_entry(c),
        created: r.created,
    }
}

/// The rule id of `/v1/alerts/rules/{id}[/tail]`.
fn rule_id(path: &str, tail: &str) -> String {
    path.strip_prefix("/v1/alerts/rules/")
        .and_then(|p| p.strip_suffix(tail))
        .and_then(percent_decoded)
        .unwrap_or_default()
        .into_owned()
}

fn unknown_rule(id: &str) -> ApiError {
    not_found(
        "unknown_rule",
        format!("you have no alert rule {:?}", echo(id)),
    )
}

#[utoipa::path(
    post,
    path = "/v1/alerts/rules",
    operation_id = "create_alert_rule",
    summary = "Create an alert rule",
    description = "A condition on one metric and where its alerts go. Conditions: \
        `above_average` / `below_average` (`factor` > 0, `window` 1m..7d: the value against \
        `factor` × (1/`factor` ×) the window's average, the current sample excluded, evaluated \
        once 90 % of the window's samples exist), `price_above` / `price_below` (`threshold`), \
        `change_pct` (`percent`, `window`); optional `for` (pending period) and \
        `notify_resolved`. At most one alert per rule per window. Channels: `webhook` and \
        `slack` (`url`, http or https), `nats` (`topcoins.v1.alerts.<user_id>`), `email` \
        (`to`). Rules of the caller with the same channel share it: one message per channel \
        and evaluation, one secret (`whsec_…`, signing webhooks as Standard Webhooks says).",
    request_body = NewRule,
    responses(
        (status = 201, description = "The rule and its channel's secret", body = RuleCreated),
        (status = 400, description = "`invalid_body`, `invalid_metric_id`, `invalid_condition`, \
            `invalid_factor`, `invalid_window`, `invalid_for`, `invalid_url`, `invalid_address`", body = ErrorBody),
        (status = 404, description = "`unknown_metric`: not a tracked metric, or not a coin of the top list", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 409, description = "`too_many_rules`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_rule(State(app): State<AppState>, request: Request) -> Response {
    let (parts, raw) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let new: NewRule = body(raw).await?;
        let metric = checked_metric(&app, new.metric.trim())?;
        new.condition
            .check()
            .map_err(|e| ApiError::bad_request(e.code, e.message))?;
        let target = new
            .channel
            .target()
            .map_err(|e| ApiError::bad_request(e.code, e.message))?;
        let existing = store
            .rules(&caller.user_id, None, MAX_RULES_PER_USER)
            .await
            .map_err(|e| db(&app, &e))?;
        if existing.len() >= MAX_RULES_PER_USER {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "too_many_rules",
                message: format!(
                    "you have {MAX_RULES_PER_USER} rules, the most a user may have; delete some first"
                ),
            }
            .into());
        }
        let now = now_ms();
        let rule = Rule {
            id: new_id("rul_"),
            user_id: caller.user_id.clone(),
            metric,
            condition: serde_json::to_string(&new.condition).unwrap_or_default(),
            channel_id: String::new(),
            created: now,
        };
        let channel = Channel {
            id: new_id("chn_"),
            user_id: caller.user_id.clone(),
            kind: new.channel.kind().as_str().to_owned(),
            target,
            secret: topcoins_alerts_secret(),
            previous_secret: None,
            previous_until: None,
            disabled: None,
            created: now,
        };
        let (rule, channel) = store
            .create_rule(rule, channel)
            .await
            .map_err(|e| db(&app, &e))?;
        app.accounts.rules_changed().await;
        tracing::info!(user = %caller.user_id, rule = %rule.id, metric = %rule.metric, "alert rule created");
        Ok::<_, Refused>(json(
            StatusCode::CREATED,
            &RuleCreated {
                rule: rule_entry(&rule, &channel),
                secret: channel.secret.clone(),
            },
        ))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A new webhook secret: `whsec_` and 32 random bytes in base64 (the Standard Webhooks form).
fn topcoins_alerts_secret() -> String {
    topcoins_schemas::alert::secret_of(&rand::random::<[u8; 32]>())
}

#[utoipa::path(
    get,
    path = "/v1/alerts/rules",
    operation_id = "list_alert_rules",
    summary = "The caller's alert rules",
    description = "By id, paged with `cursor`. Secrets are not shown (rotate one to get a new one).",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 1000,
            description = "Entries per page (default 100)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "The caller's rules", body = RulesResponse),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`, `duplicate_parameter`", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_rules(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (limit, cursor) = page_query(&parts, RULES_DEFAULT_LIMIT, RULES_MAX_LIMIT)?;
        let (caller, store) = caller(&app, &parts).await?;
        let mut rows = store
            .rules(&caller.user_id, cursor.as_deref(), limit + 1)
            .await
            .map_err(|e| db(&app, &e))?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(r, _)| r.id.clone())
        } else {
            None
        };
        let data: Vec<RuleEntry> = rows.iter().map(|(r, c)| rule_entry(r, c)).collect();
        Ok::<_, Refused>(json(
            StatusCode::OK,
            &RulesResponse {
                meta: MetricsMeta {
                    count: data.len(),
                    next_cursor,
                },
                data,
            },
        ))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    delete,
    path = "/v1/alerts/rules/{id}",
    operation_id = "delete_alert_rule",
    summary = "Delete one of the caller's alert rules",
    description = "Its alerts stay in `GET /v1/alerts`; what is still in the outbox is delivered.",
    params(("id" = String, Path, description = "The rule's id (`rul_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`unknown_rule`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_rule(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let id = rule_id(parts.uri.path(), "");
        let deleted = store
            .delete_rule(&caller.user_id, &id)
            .await
            .map_err(|e| db(&app, &e))?;
        if !deleted {
            return Err(unknown_rule(&id).into());
        }
        app.accounts.rules_changed().await;
        Ok::<_, Refused>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    post,
    path = "/v1/alerts/rules/{id}/secret",
    operation_id = "rotate_alert_secret",
    summary = "Rotate the signing secret of a rule's channel",
    description = "A new secret for the channel (shared by the caller's rules with the same \
        target). For 24 h the previous one signs too: every webhook carries both signatures, \
        so a receiver can switch without missing one.",
    params(("id" = String, Path, description = "The rule's id (`rul_…`)")),
    responses(
        (status = 200, description = "The new secret", body = SecretRotated),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`unknown_rule`", body = ErrorBody),
        (status = 409, description = "`rotation_in_progress`: the previous rotation's grace lasts", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn rotate_secret(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let id = rule_id(parts.uri.path(), "/secret");
        let until = now_ms() + ROTATION_GRACE_MS;
        let channel = match store
            .rotate_secret(
                &caller.user_id,
                &id,
                topcoins_alerts_secret(),
                until,
                now_ms(),
            )
            .await
            .map_err(|e| db(&app, &e))?
        {
            Rotation::Rotated(c) => c,
            Rotation::NoRule => return Err(unknown_rule(&id).into()),
            Rotation::InGrace(until) => {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    code: "rotation_in_progress",
                    message: format!(
                        "the previous rotation's secret signs until {} (Unix ms); rotate again after that, or the secret before it would stop signing at once",
                        until
                    ),
                }
                .into());
            }
        };
        app.accounts.rules_changed().await;
        Ok::<_, Refused>(json(
            StatusCode::OK,
            &SecretRotated {
                channel_id: channel.id,
                secret: channel.secret,
                previous_valid_until: until,
            },
        ))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    post,
    path = "/v1/alerts/rules/{id}/test",
    operation_id = "test_alert_rule",
    summary = "Send a test alert on a rule's channel",
    description = "An `alert.test` message, committed to the outbox and delivered like any \
        alert (signed, retried); its outcome shows in `GET /v1/alerts`.",
    params(("id" = String, Path, description = "The rule's id (`rul_…`)")),
    responses(
        (status = 202, description = "In the outbox", body = TestFired),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`unknown_rule`", body = ErrorBody),
        (status = 409, description = "`channel_disabled`: its endpoint answered 410 Gone", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn test_rule(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let id = rule_id(parts.uri.path(), "/test");
        let (rule, channel) = store
            .rule(&caller.user_id, &id)
            .await
            .map_err(|e| db(&app, &e))?
            .ok_or_else(|| unknown_rule(&id))?;
        if channel.disabled.is_some() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "channel_disabled",
                message: "this rule's channel answered 410 Gone and is disabled; create a rule with the same target to enable it again".to_owned(),
            }
            .into());
        }
        let now = now_ms();
        let condition: Option<Condition> = serde_json::from_str(&rule.condition).ok();
        let checked = condition.as_ref().and_then(|c| c.check().ok());
        let alert = Alert {
            id: new_id("alr_"),
            user_id: caller.user_id.clone(),
            rule_id: rule.id.clone(),
            metric: rule.metric.clone(),
            kind: "test".to_owned(),
            time: now,
            value: 0.0,
            average: None,
            dedupe: String::new(),
            message_id: new_id("msg_"),
        };
        let alert = Alert {
            dedupe: format!("test:{}", alert.id),
            ..alert
        };
        let data = AlertData {
            alert_id: alert.id.clone(),
            rule_id: rule.id.clone(),
            metric: rule.metric.clone(),
            condition: checked.map_or("", |c| c.kind.as_str()).to_owned(),
            value: 0.0,
            average: None,
            factor: checked.map_or(0.0, |c| c.level),
            window: condition.map(|c| c.window_text()).unwrap_or_default(),
            time: rfc3339(now),
        };
        let body = AlertBody::new("test", rfc3339(now), vec![data])
            .map(|b| serde_json::to_string(&b).unwrap_or_default())
            .unwrap_or_default();
        let message = Message {
            id: alert.message_id.clone(),
            user_id: caller.user_id.clone(),
            channel_id: channel.id.clone(),
            body,
            created: now,
            status: "pending".to_owned(),
            attempts: 0,
            next_attempt: Some(now),
        };
        let out = TestFired {
            alert_id: alert.id.clone(),
            message_id: message.id.clone(),
        };
        store
            .commit_alerts(Decision {
                states: Vec::new(),
                alerts: vec![alert],
                messages: vec![message],
            })
            .await
            .map_err(|e| db(&app, &e))?;
        Ok::<_, Refused>(json(StatusCode::ACCEPTED, &out))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `time:id` of a page's last alert, and back.
fn alerts_cursor(time: i64, id: &str) -> String {
    format!("{time}:{id}")
}

fn parse_alerts_cursor(c: &str) -> Option<(i64, String)> {
    let (time, id) = c.split_once(':')?;
    Some((time.parse().ok()?, id.to_owned()))
}

#[utoipa::path(
    get,
    path = "/v1/alerts",
    operation_id = "list_alerts",
    summary = "What fired: the caller's alerts, newest first",
    description = "Each alert with its rule, metric, the value and the window's average, and \
        its delivery: the message's status and every attempt's outcome.",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 500,
            description = "Entries per page (default 50)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "The caller's alerts", body = AlertsResponse),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`, `duplicate_parameter`", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_alerts(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (limit, cursor) = page_query(&parts, ALERTS_DEFAULT_LIMIT, ALERTS_MAX_LIMIT)?;
        let before = match cursor.as_deref() {
            None => None,
            Some(c) => Some(parse_alerts_cursor(c).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    format!("cursor must be a meta.next_cursor, got {:?}", echo(c)),
                )
            })?),
        };
        let (caller, store) = caller(&app, &parts).await?;
        let page = store
            .alerts(&caller.user_id, before, limit)
            .await
            .map_err(|e| db(&app, &e))?;
        let data: Vec<AlertEntry> = page
            .alerts
            .iter()
            .map(|a| {
                let message = page.messages.iter().find(|m| m.id == a.message_id);
                AlertEntry {
                    id: a.id.clone(),
                    rule_id: a.rule_id.clone(),
                    metric: a.metric.clone(),
                    kind: a.kind.clone(),
                    time: a.time,
                    value: a.value,
                    average: a.average,
                    delivery: DeliveryEntry {
                        message_id: a.message_id.clone(),
                        status: message.map_or("pending", |m| m.status.as_str()).to_owned(),
                        next_attempt: message
                            .and_then(|m| m.next_attempt)
                            .filter(|_| message.is_some_and(|m| m.status == "pending")),
                        attempts: page
                            .attempts
                            .iter()
                            .filter(|t| t.message_id == a.message_id)
                            .map(|t| AttemptEntry {
                                attempt: t.attempt,
                                time: t.time,
                                status_code: t.status_code,
                                outcome: t.outcome.clone(),
                            })
                            .collect(),
                    },
                }
            })
            .collect();
        Ok::<_, Refused>(json(
            StatusCode::OK,
            &AlertsResponse {
                meta: MetricsMeta {
                    count: data.len(),
                    next_cursor: page.next.map(|(t, id)| alerts_cursor(t, &id)),
                },
                data,
            },
        ))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
