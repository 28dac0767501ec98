//! Users, keys and watchlists: `POST /v1/users` (admin key), `POST|GET /v1/keys`,
//! `DELETE /v1/keys/{id}`, `POST|GET /v1/watchlist`,
//! `DELETE /v1/watchlist/{exchange}/{pair}/{metric}`. Every one needs a key (see
//! [`crate::accounts`]); a user sees and changes only their own keys and watchlist, and
//! what is not theirs is answered as not there (`404`), never shown.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use topcoins_history::{AccountStore, RecordRange, RecordStore, Store, User, Watch};
use topcoins_schemas::MetricKind;
use topcoins_schemas::api::{
    ErrorBody, KeyCreated, KeyEntry, KeysResponse, MetricRank, MetricsMeta, NewUser, NewWatch,
    RecordEntry, UserCreated, WatchEntry, WatchlistResponse,
};
use topcoins_schemas::ticker::{EXCHANGES, is_pair};

use super::coins::{percent_decoded, too_long};
use super::metrics_api::MetricId;
use super::{AppState, MAX_BODY_BYTES, MAX_QUERY_BYTES};
use crate::accounts::{Caller, Refused, new_id, new_key};
use crate::error::ApiError;
use crate::history::now_ms;
use crate::query::{echo, params, parse_limit};
use crate::render::rfc3339;

/// Watchlist entries a page holds by default and at most (each carries a day of records).
pub const WATCHLIST_DEFAULT_LIMIT: usize = 20;
pub const WATCHLIST_MAX_LIMIT: usize = 100;
/// Keys a page of `GET /v1/keys` holds by default and at most.
pub const KEYS_DEFAULT_LIMIT: usize = 100;
pub const KEYS_MAX_LIMIT: usize = 1000;
/// Longest user name.
pub const MAX_NAME_CHARS: usize = 100;
/// A day, the span of records `GET /v1/watchlist` gives each metric.
const DAY_MS: i64 = 24 * 3600 * 1000;

fn created(value: &impl serde::Serialize) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut r = (status, axum::Json(value)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

/// The request's JSON body as a `T`, or a 400 saying what is wrong with it.
pub(crate) async fn body<T: DeserializeOwned>(body: axum::body::Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_body",
                format!("the body could not be read (at most {MAX_BODY_BYTES} bytes)"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

/// The caller and the open store, or the refusal.
pub(crate) async fn caller(
    app: &AppState,
    parts: &Parts,
) -> Result<(Arc<Caller>, Arc<Store>), Refused> {
    let store = app.history.store()?;
    let caller = app.accounts.caller(&parts.headers, &store).await?;
    app.accounts.touch(&caller, store.clone(), now_ms());
    Ok((caller, store))
}

pub(crate) fn db(app: &AppState, e: &topcoins_history::Error) -> Refused {
    app.history.failed(e).into()
}

pub(crate) fn not_found(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code,
        message,
    }
}

#[utoipa::path(
    post,
    path = "/v1/users",
    operation_id = "create_user",
    summary = "Create a user (admin key)",
    description = "Needs `Authorization: Bearer <TOPCOINS_ADMIN_KEY>`. Creates the user and \
        their first API key, shown this once (it is stored only as its SHA-256).",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user and their key", body = UserCreated),
        (status = 400, description = "`invalid_body`, `invalid_name`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_authorization`", body = ErrorBody),
        (status = 403, description = "`not_admin`, `admin_disabled`", body = ErrorBody),
        (status = 503, description = "`history_unavailable`: the database is down", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_user(State(app): State<AppState>, request: Request) -> Response {
    let (parts, raw) = request.into_parts();
    let run = async {
        app.accounts.admin(&parts.headers)?;
        let new: NewUser = body(raw).await?;
        let name = new.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "invalid_name",
                format!(
                    "name must be 1 to {MAX_NAME_CHARS} characters, none of them control characters"
                ),
            )
            .into());
        }
        let store = app.history.store()?;
        let now = now_ms();
        let user = User {
            id: new_id("usr_"),
            name: name.to_owned(),
            created: now,
        };
        let key = new_key(&user.id, now);
        let out = UserCreated {
            id: user.id.clone(),
            name: user.name.clone(),
            key_id: key.stored.id.clone(),
            api_key: key.secret,
        };
        store
            .create_user(user, key.stored)
            .await
            .map_err(|e| db(&app, &e))?;
        tracing::info!(user = %out.id, "user created");
        Ok::<_, Refused>(json(StatusCode::CREATED, &out))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    post,
    path = "/v1/keys",
    operation_id = "create_key",
    summary = "Another API key for the caller",
    description = "For rotation without downtime: create the new key, move clients to it, \
        revoke the old one. Shown this once.",
    responses(
        (status = 201, description = "The new key", body = KeyCreated),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_key(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let key = new_key(&caller.user_id, now_ms());
        let out = KeyCreated {
            id: key.stored.id.clone(),
            api_key: key.secret,
        };
        store.add_key(key.stored).await.map_err(|e| db(&app, &e))?;
        Ok::<_, Refused>(json(StatusCode::CREATED, &out))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    get,
    path = "/v1/keys",
    operation_id = "list_keys",
    summary = "The caller's keys (never the keys themselves)",
    description = "Keys that are not revoked, by id: id, the key's first characters, when it \
        was created and last used (to the minute).",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 1000,
            description = "Entries per page (default 100)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "The caller's keys", body = KeysResponse),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`, `duplicate_parameter`", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_keys(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (limit, cursor) = page_query(&parts, KEYS_DEFAULT_LIMIT, KEYS_MAX_LIMIT)?;
        let (caller, store) = caller(&app, &parts).await?;
        let keys = store
            .keys(&caller.user_id)
            .await
            .map_err(|e| db(&app, &e))?;
        let mut data: Vec<KeyEntry> = keys
            .into_iter()
            .filter(|k| k.revoked.is_none())
            .filter(|k| cursor.as_deref().is_none_or(|c| k.id.as_str() > c))
            .take(limit + 1)
            .map(|k| KeyEntry {
                id: k.id,
                prefix: k.prefix,
                created: k.created,
                last_used: k.last_used,
            })
            .collect();
        let next_cursor = cut(&mut data, limit, |k| k.id.clone());
        Ok::<_, Refused>(json(
            StatusCode::OK,
            &KeysResponse {
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

/// Cuts `data` (read with one more than `limit`) to a page; the next cursor if there is more.
fn cut<T>(data: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> Option<String> {
    if data.len() > limit {
        data.truncate(limit);
        data.last().map(id)
    } else {
        None
    }
}

/// `limit` and `cursor` of a list.
pub(crate) fn page_query(
    parts: &Parts,
    default: usize,
    max: usize,
) -> Result<(usize, Option<String>), ApiError> {
    let raw = parts.uri.query();
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return Err(too_long());
    }
    let [limit, cursor] = params(raw, ["limit", "cursor"])?;
    let limit = limit
        .as_deref()
        .map_or(Ok(default), |v| parse_limit(v, max))?;
    if let Some(c) = &cursor
        && (c.is_empty() || c.len() > 200)
    {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!("cursor must be a meta.next_cursor, got {:?}", echo(c)),
        ));
    }
    Ok((limit, cursor))
}

#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    operation_id = "revoke_key",
    summary = "Revoke one of the caller's keys",
    description = "Effective on every API node within a second (a NATS notice drops it from \
        their caches). A caller may revoke the key it is using.",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`unknown_key`: no such key of the caller's", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn revoke_key(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let id = parts
            .uri
            .path()
            .strip_prefix("/v1/keys/")
            .and_then(percent_decoded)
            .unwrap_or_default()
            .into_owned();
        let revoked = store
            .revoke_key(&caller.user_id, &id, now_ms())
            .await
            .map_err(|e| db(&app, &e))?;
        if !revoked {
            return Err(not_found(
                "unknown_key",
                format!("you have no key {:?} that is not revoked", echo(&id)),
            )
            .into());
        }
        app.accounts.revoked(&id).await;
        tracing::info!(user = %caller.user_id, key = %id, "key revoked");
        Ok::<_, Refused>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// A watchlist entry's parts, checked against what the exchanges list.
fn checked_metric(
    app: &AppState,
    exchange: &str,
    pair: &str,
    metric: &str,
) -> Result<Watch, ApiError> {
    let Some(exchange) = EXCHANGES.into_iter().find(|e| *e == exchange) else {
        return Err(ApiError::bad_request(
            "unknown_exchange",
            format!(
                "exchange must be one of {}, got {:?}",
                EXCHANGES.join(", "),
                echo(exchange)
            ),
        ));
    };
    if !is_pair(pair) {
        return Err(ApiError::bad_request(
            "invalid_pair",
            format!(
                "pair must be base-quote in lower case (btc-usd), got {:?}",
                echo(pair)
            ),
        ));
    }
    let Some(kind) = MetricKind::parse(metric) else {
        let kinds: Vec<&str> = MetricKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(ApiError::bad_request(
            "unknown_metric_kind",
            format!(
                "metric must be one of {}, got {:?}",
                kinds.join(", "),
                echo(metric)
            ),
        ));
    };
    Ok(Watch {
        metric: format!("{exchange}:{pair}:{}", kind.as_str()),
        exchange: exchange.to_owned(),
        pair: pair.to_owned(),
        created: now_ms(),
    })
    .and_then(|w| match app.tickers.lists(exchange, pair) {
        Some(true) => Ok(w),
        Some(false) => Err(not_found(
            "unknown_pair",
            format!("{exchange} does not list {pair:?} (see GET /v1/exchanges)"),
        )),
        None => Err(not_found(
            "unknown_exchange",
            format!("{exchange} is not polled by this installation (TOPCOINS_EXCHANGES)"),
        )),
    })
}

#[utoipa::path(
    post,
    path = "/v1/watchlist",
    operation_id = "watch",
    summary = "Track a metric on the caller's watchlist",
    description = "The pair is polled from the exchange actors' next cycle on (a tracked-set \
        change over NATS, no restart). `201` when added, `200` when it was there already.",
    request_body = NewWatch,
    responses(
        (status = 200, description = "Already on the watchlist", body = topcoins_schemas::api::MetricEntry),
        (status = 201, description = "Added", body = topcoins_schemas::api::MetricEntry),
        (status = 400, description = "`invalid_body`, `unknown_exchange`, `invalid_pair`, `unknown_metric_kind`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`unknown_pair`: the exchange does not list it; `unknown_exchange`: not polled here", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn watch(State(app): State<AppState>, request: Request) -> Response {
    let (parts, raw) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let new: NewWatch = body(raw).await?;
        let w = checked_metric(&app, &new.exchange, &new.pair, &new.metric)?;
        let entry = topcoins_schemas::api::MetricEntry {
            id: w.metric.clone(),
            exchange: w.exchange.clone(),
            pair: w.pair.clone(),
            metric: new.metric.clone(),
        };
        let exchange = w.exchange.clone();
        let added = store
            .watch(&caller.user_id, w)
            .await
            .map_err(|e| db(&app, &e))?;
        if added {
            app.accounts.publish_tracked(&exchange, &store).await;
            Ok::<_, Refused>(created(&entry))
        } else {
            Ok(json(StatusCode::OK, &entry))
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    delete,
    path = "/v1/watchlist/{exchange}/{pair}/{metric}",
    operation_id = "unwatch",
    summary = "Stop tracking a metric on the caller's watchlist",
    description = "When no user watches the pair any more (and it is not in TOPCOINS_PAIRS) it \
        is no longer polled from the next cycle on.",
    params(
        ("exchange" = String, Path, example = "kraken", pattern = "^(kraken|coinbase|binance)$"),
        ("pair" = String, Path, example = "btc-usd", pattern = "^[a-z0-9]{1,20}-[a-z0-9]{1,20}$"),
        ("metric" = String, Path, example = "volume",
            pattern = "^(price|high|low|change_pct|change_abs|volume|volume_quote)$"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`unknown_exchange`, `invalid_pair`, `unknown_metric_kind`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 404, description = "`not_watched`: not on the caller's watchlist", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn unwatch(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (caller, store) = caller(&app, &parts).await?;
        let rest = parts
            .uri
            .path()
            .strip_prefix("/v1/watchlist/")
            .and_then(percent_decoded)
            .unwrap_or_default()
            .into_owned();
        let mut segments = rest.split('/');
        let (exchange, pair, metric) = (
            segments.next().unwrap_or(""),
            segments.next().unwrap_or(""),
            segments.next().unwrap_or(""),
        );
        let id = format!("{exchange}:{pair}:{metric}");
        let Some(parsed) = MetricId::parse(&id) else {
            // The same checks and messages as adding one.
            return Err(checked_metric(&app, exchange, pair, metric)
                .err()
                .unwrap_or_else(|| ApiError::bad_request("invalid_metric_id", "not a metric"))
                .into());
        };
        let removed = store
            .unwatch(&caller.user_id, &id)
            .await
            .map_err(|e| db(&app, &e))?;
        if !removed {
            return Err(not_found(
                "not_watched",
                format!("{:?} is not on your watchlist", echo(&id)),
            )
            .into());
        }
        app.accounts.publish_tracked(parsed.exchange, &store).await;
        Ok::<_, Refused>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    get,
    path = "/v1/watchlist",
    operation_id = "watchlist",
    summary = "The caller's watchlist: every metric with its rank and last 24 h of records",
    description = "By metric id, paged. Each entry has the metric's value and `as_of` now \
        (`null` until its pair has been polled), its rank, and its records of the last 24 h \
        (one per poll) — what a client needs to draw every chart in one call.",
    params(
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 100,
            description = "Entries per page (default 20)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "The watchlist", body = WatchlistResponse),
        (status = 400, description = "`invalid_limit`, `invalid_cursor`, `duplicate_parameter`", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
        (status = 401, description = "`missing_key`, `invalid_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "`history_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn watchlist(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let run = async {
        let (limit, cursor) = page_query(&parts, WATCHLIST_DEFAULT_LIMIT, WATCHLIST_MAX_LIMIT)?;
        let (caller, store) = caller(&app, &parts).await?;
        let mut watches = store
            .watchlist(&caller.user_id, cursor.as_deref(), limit + 1)
            .await
            .map_err(|e| db(&app, &e))?;
        let next_cursor = cut(&mut watches, limit, |w| w.metric.clone());
        let now = now_ms();
        let ranks = app.tickers.ranks();
        let mut data = Vec::with_capacity(watches.len());
        for w in watches {
            let kind = MetricId::parse(&w.metric).map(|id| id.kind);
            let held = app.tickers.get(&w.exchange);
            let current = held
                .as_ref()
                .and_then(|h| Some((h.list.get(&w.pair)?.value(kind?), h.as_of)));
            let records = store
                .records(&RecordRange {
                    metric: w.metric.clone(),
                    from: now - DAY_MS,
                    to: now,
                    limit: topcoins_history::MAX_LIMIT,
                    cursor: None,
                })
                .await
                .map_err(|e| db(&app, &e))?;
            let rank = ranks.as_ref().and_then(|r| {
                r.get(&w.metric).map(|r| MetricRank {
                    position: r.position,
                    of: r.of,
                    stddev_24h: r.stddev_24h,
                })
            });
            data.push(WatchEntry {
                metric: kind.map_or_else(String::new, |k| k.as_str().to_owned()),
                id: w.metric,
                exchange: w.exchange,
                pair: w.pair,
                added: w.created,
                value: current.map(|c| c.0),
                as_of: current.map(|c| rfc3339(c.1)),
                rank,
                records: records
                    .records
                    .into_iter()
                    .map(|(time, value)| RecordEntry { time, value })
                    .collect(),
            });
        }
        Ok::<_, Refused>(json(
            StatusCode::OK,
            &WatchlistResponse {
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
