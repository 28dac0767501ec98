//! Who is calling: API keys, the admin key, per-key rate limits and revocation.
//!
//! **Keys.** A key is `tck_` and 64 hex digits: 256 random bits from the thread's
//! cryptographically secure generator (ChaCha, seeded from the OS), with a prefix that makes
//! a leaked key easy to recognise (secret scanners, logs). It is shown once and stored only as
//! its SHA-256; a fast hash is right for a random secret of this length (nothing to guess),
//! and the stored digest is compared with the presented one in constant time.
//!
//! **Cache.** A key's answer (its user, or that it is unknown or revoked) is cached on the
//! node for [`KEY_TTL`], so an authenticated request costs one hash and one cache lookup, not
//! a database read. Revoking a key drops it from this node's cache and publishes
//! [`KEY_REVOKED`]; every node follows that subject and drops it too, so a revocation holds
//! everywhere within a second. A node that was cut off from NATS at that moment forgets the
//! key when its entry expires ([`KEY_TTL`]).
//!
//! **Limits.** Requests are limited per key (a GCRA limiter, `governor`): a steady
//! `TOPCOINS_KEY_RATE` per second with bursts of `TOPCOINS_KEY_BURST`; over it, `429` with
//! `Retry-After`. Only the routes that take a key pay for any of this; `GET /` and the other
//! public routes never look at `Authorization`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_nats::Client;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use topcoins_bus::subjects::KEY_REVOKED;
use topcoins_bus::{NatsConfig, Tracked};
use topcoins_history::{AccountStore, ApiKey, Store};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// What a key's answer is cached for at most (see the module docs).
pub const KEY_TTL: Duration = Duration::from_secs(30);
/// Keys whose answers a node caches at most.
const KEY_CACHE_ENTRIES: u64 = 100_000;
/// The recognisable start of every key.
pub const KEY_PREFIX: &str = "tck_";
/// Characters of a key shown in listings (`tck_` and 8 hex digits).
const SHOWN: usize = KEY_PREFIX.len() + 8;
/// How often a key's `last_used` is written at most.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Requests a key may make, per second and in a burst, by default.
pub const DEFAULT_KEY_RATE: u32 = 20;
pub const DEFAULT_KEY_BURST: u32 = 40;

/// The caller of a request with a valid key.
#[derive(Debug)]
pub struct Caller {
    pub user_id: String,
    pub key_id: String,
    /// When `last_used` was last written (Unix ms).
    touched: AtomicI64,
}

/// A new key: what the caller is shown once, and what is stored.
pub struct NewKey {
    pub secret: String,
    pub stored: ApiKey,
}

/// Makes a key for `user_id` with id `key_id` at `now`.
pub fn new_key(user_id: &str, now: i64) -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", hex(&bytes));
    NewKey {
        stored: ApiKey {
            id: new_id("key_"),
            user_id: user_id.to_owned(),
            prefix: secret[..SHOWN].to_owned(),
            hash: digest(&secret),
            created: now,
            last_used: None,
            revoked: None,
        },
        secret,
    }
}

/// A random id: `prefix` and 16 hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `s` has the shape of a key (it may still be unknown).
fn is_key_shaped(s: &str) -> bool {
    s.len() == KEY_PREFIX.len() + 64
        && s.starts_with(KEY_PREFIX)
        && s[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a request is refused before its handler runs.
#[derive(Debug)]
pub enum Refused {
    Error(ApiError),
    /// Over the key's rate: retry after this many seconds.
    Limited(u64),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Error(e) => {
                let unauthorized = e.status == StatusCode::UNAUTHORIZED;
                let mut r = e.into_response();
                if unauthorized {
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"topcoins\""),
                    );
                }
                r
            }
            Refused::Limited(secs) => {
                let mut r = ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "rate_limited",
                    message: format!(
                        "too many requests with this key; retry in {secs} s (TOPCOINS_KEY_RATE)"
                    ),
                }
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                r
            }
        }
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Error(e)
    }
}

fn unauthorized(code: &'static str, message: &str) -> Refused {
    Refused::Error(ApiError {
        status: StatusCode::UNAUTHORIZED,
        code,
        message: message.to_owned(),
    })
}

pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code,
        message: message.into(),
    }
}

/// The bearer token of a request, if it has an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Refused> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing_key",
            "this endpoint needs an API key: Authorization: Bearer <key>",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| {
            unauthorized(
                "invalid_authorization",
                "the Authorization header must be: Bearer <key>",
            )
        })
}

/// See the module docs.
pub struct Accounts {
    admin_key: Option<[u8; 32]>,
    /// Digest → the caller, or `None` for a key that is unknown or revoked.
    cache: moka::sync::Cache<[u8; 32], Option<Arc<Caller>>>,
    /// Key ids revoked lately (for longer than a cached answer lives): a lookup that read the
    /// key just before its revocation and cached it just after is not believed.
    revoked: moka::sync::Cache<String, ()>,
    limiter: DefaultKeyedRateLimiter<String>,
    /// NATS for revocations and the tracked set, once connected.
    bus: arc_swap::ArcSwapOption<(Client, Tracked)>,
    metrics: ApiMetrics,
}

impl Accounts {
    pub fn new(admin_key: Option<&str>, rate: u32, burst: u32, metrics: ApiMetrics) -> Self {
        let rate = NonZeroU32::new(rate.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self {
            admin_key: admin_key.filter(|k| !k.is_empty()).map(digest),
            cache: moka::sync::Cache::builder()
                .max_capacity(KEY_CACHE_ENTRIES)
                .time_to_live(KEY_TTL)
                .support_invalidation_closures()
                .build(),
            revoked: moka::sync::Cache::builder()
                .max_capacity(KEY_CACHE_ENTRIES)
                .time_to_live(KEY_TTL * 2)
                .build(),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            bus: arc_swap::ArcSwapOption::empty(),
            metrics,
        }
    }

    /// Whether the request carries the admin key (`TOPCOINS_ADMIN_KEY`).
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let token = bearer(headers)?;
        let Some(admin) = &self.admin_key else {
            return Err(forbidden(
                "admin_disabled",
                "no TOPCOINS_ADMIN_KEY is set on this node: users cannot be created",
            )
            .into());
        };
        if bool::from(digest(token).ct_eq(admin)) {
            Ok(())
        } else {
            self.count("forbidden");
            Err(forbidden("not_admin", "creating users needs the admin key").into())
        }
    }

    /// The caller of a request, by its key; counts and limits the request.
    pub async fn caller(&self, headers: &HeaderMap, store: &Store) -> Result<Arc<Caller>, Refused> {
        let token = bearer(headers)?;
        if !is_key_shaped(token) {
            self.count("invalid");
            return Err(unauthorized(
                "invalid_key",
                "not an API key (tck_ and 64 hex digits)",
            ));
        }
        let hash = digest(token);
        let known = match self.cache.get(&hash) {
            Some(known) => known,
            None => {
                let found = store.key_by_hash(hash).await.map_err(|e| {
                    tracing::warn!(error = %e, "key lookup failed");
                    ApiError::history_unavailable("the database is unavailable; retrying")
                })?;
                let known = found
                    .filter(|k| bool::from(k.hash.ct_eq(&hash)) && k.revoked.is_none())
                    .map(|k| {
                        Arc::new(Caller {
                            user_id: k.user_id,
                            key_id: k.id,
                            touched: AtomicI64::new(k.last_used.unwrap_or(i64::MIN)),
                        })
                    });
                self.cache.insert(hash, known.clone());
                known
            }
        };
        let Some(caller) = known.filter(|c| !self.revoked.contains_key(&c.key_id)) else {
            self.count("unknown");
            return Err(unauthorized("invalid_key", "unknown or revoked API key"));
        };
        if let Err(not_until) = self.limiter.check_key(&caller.key_id) {
            self.count("limited");
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(Refused::Limited(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        self.count("ok");
        Ok(caller)
    }

    /// Writes the caller's `last_used` if it is a minute old (off the request's path).
    pub fn touch(&self, caller: &Caller, store: Arc<Store>, now: i64) {
        let last = caller.touched.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TOUCH_EVERY_MS
            || caller
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let key_id = caller.key_id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&key_id, now - now % TOUCH_EVERY_MS).await {
                tracing::debug!(error = %e, "last_used of a key not written");
            }
        });
    }

    fn count(&self, outcome: &str) {
        self.metrics.auth.with_label_values(&[outcome]).inc();
    }

    /// Forgets what this node cached of key `key_id`.
    pub fn forget(&self, key_id: &str) {
        self.revoked.insert(key_id.to_owned(), ());
        let key_id = key_id.to_owned();
        let _ = self
            .cache
            .invalidate_entries_if(move |_, v| v.as_ref().is_some_and(|c| c.key_id == key_id));
    }

    /// Revoked here: forgotten on this node and announced to the others.
    pub async fn revoked(&self, key_id: &str) {
        self.forget(key_id);
        if let Some(bus) = self.bus.load_full() {
            let body = serde_json::json!({ "key_id": key_id }).to_string();
            if let Err(e) = bus.0.publish(KEY_REVOKED, body.into()).await {
                tracing::warn!(error = %e, "revocation not announced; other nodes forget the key within their cache's time to live");
            }
        } else {
            tracing::warn!(
                "revocation not announced (no NATS yet); other nodes forget the key within their cache's time to live"
            );
        }
    }

    /// Tells the alerts process that the rules changed (best effort: it also reads them
    /// again every half minute).
    pub async fn rules_changed(&self) {
        if let Some(bus) = self.bus.load_full()
            && let Err(e) = bus
                .0
                .publish(topcoins_schemas::alert::RULES_CHANGED_SUBJECT, "{}".into())
                .await
        {
            tracing::warn!(error = %e, "rule change not announced; the alerts process reads the rules within 30 s");
        }
    }

    /// The tracked-set bucket, once NATS is there.
    pub fn tracked(&self) -> Option<Tracked> {
        self.bus.load().as_ref().map(|b| b.1.clone())
    }

    /// Connects to NATS (retrying), opens the tracked-set bucket, and follows revocations
    /// until the connection ends for good. Runs for the node's life.
    pub async fn follow(self: Arc<Self>, nats: NatsConfig) {
        let mut nats = nats;
        nats.name = format!("{}-accounts", nats.name);
        let (client, _link) = match topcoins_bus::connect(&nats).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accounts: NATS unavailable; revocations and watchlist changes are not announced");
                return;
            }
        };
        let mut backoff =
            topcoins_runtime::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let (subscription, tracked) = loop {
            let opened = async {
                let sub = client
                    .subscribe(KEY_REVOKED)
                    .await
                    .map_err(|e| e.to_string())?;
                let tracked = Tracked::open(&client, nats.stream_replicas)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((sub, tracked))
            };
            match opened.await {
                Ok(done) => break done,
                Err(e) => {
                    tracing::debug!(error = %e, "accounts: waiting for NATS");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        // Flushed, so the subscription is in place before anything is announced.
        let _ = client.flush().await;
        self.bus.store(Some(Arc::new((client, tracked))));
        let mut subscription = subscription;
        while let Some(message) = subscription.next().await {
            match serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|v| v.get("key_id")?.as_str().map(str::to_owned))
            {
                Some(key_id) => {
                    tracing::debug!(key_id, "key revoked elsewhere; forgotten here");
                    self.forget(&key_id);
                }
                None => {
                    self.metrics
                        .notices_rejected
                        .with_label_values(&["bad_revocation"])
                        .inc();
                    tracing::warn!("a revocation notice that does not decode; ignored");
                }
            }
        }
    }

    /// Sets `exchange`'s watched pairs in the tracked-set bucket from the database (after a
    /// watchlist change there). Best effort: without NATS the pollers learn of it at the next
    /// change that gets through.
    pub async fn publish_tracked(&self, exchange: &str, store: &Store) {
        let Some(tracked) = self.tracked() else {
            tracing::warn!(
                exchange,
                "watchlist changed but NATS is not there: the pollers learn of it at the next change"
            );
            return;
        };
        if let Err(e) = tracked
            .refresh(exchange, || store.watched_pairs(exchange))
            .await
        {
            tracing::warn!(exchange, error = %e, "tracked set not updated");
        }
    }

    /// Drops idle keys' limiter state (call now and then).
    pub fn tidy(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_stored_as_their_digest() {
        let a = new_key("usr_1", 5);
        let b = new_key("usr_1", 5);
        assert_ne!(a.secret, b.secret);
        assert!(is_key_shaped(&a.secret), "{}", a.secret);
        assert_eq!(a.stored.hash, digest(&a.secret));
        assert_eq!(a.stored.prefix, &a.secret[..12]);
        assert!(a.stored.id.starts_with("key_") && a.stored.id.len() == 20);
        assert!(!is_key_shaped("tck_abc"));
        assert!(!is_key_shaped(&a.secret.to_uppercase()));
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Err(Refused::Error(e)) if e.code == "missing_key"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(bearer(&h), Err(Refused::Error(e)) if e.code == "invalid_authorization"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  tck_x "),
        );
        assert_eq!(bearer(&h).unwrap(), "tck_x");
    }
}
