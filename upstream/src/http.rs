//! A provider's HTTP client: timeouts, retries for what is transient, `Retry-After`, metrics.
//!
//! Transient means: no connection, a timeout, a 5xx, or a 429. Those are retried with
//! [`topcoins_runtime::Backoff`]: exponential with equal jitter (a ceiling of
//! `backoff · 2^attempt`, capped at `backoff_max`; the wait is half the ceiling plus a random
//! part up to the other half), or after `Retry-After` when the provider says how long to wait
//! and that is within the cap (a longer one ends the retries). Everything else comes back to
//! the provider module at once with its status and body, because only it knows what the body
//! means (CoinMarketCap's `status.error_code`, CryptoCompare's errors inside HTTP 200).

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use topcoins_runtime::Backoff;

use crate::{UpstreamError, UpstreamErrorKind, UpstreamMetrics};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A provider body larger than this is refused rather than buffered.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// How hard to try, for every provider call.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Whole-request timeout of a provider call, connect to last byte.
    #[arg(long = "upstream-timeout", env = "TOPCOINS_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Retries of a provider call after a transient failure (connection, timeout, 5xx, 429).
    #[arg(long = "upstream-retries", env = "TOPCOINS_UPSTREAM_RETRIES", default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// First backoff between retries; doubles each time, with equal jitter (half of it plus a
    /// random part up to the other half).
    #[arg(long = "upstream-backoff", env = "TOPCOINS_UPSTREAM_BACKOFF", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub backoff: Duration,
    /// Longest wait between retries; a `Retry-After` longer than this ends the retries.
    #[arg(long = "upstream-backoff-max", env = "TOPCOINS_UPSTREAM_BACKOFF_MAX", default_value = "8s", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// A response that was not transient: its status and whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    provider: &'static str,
    config: HttpConfig,
    metrics: UpstreamMetrics,
}

/// One failed attempt: the error and, for a 429, how long the provider asked us to wait.
struct Attempt {
    error: UpstreamError,
    retry_after: Option<Duration>,
}

impl Upstream {
    pub fn new(provider: &'static str, config: HttpConfig, metrics: UpstreamMetrics) -> Self {
        crate::init_tls();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("topcoins/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("http client builds");
        Self {
            client,
            provider,
            config,
            metrics,
        }
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }

    /// GETs `url` with `query` and `headers`, retrying what is transient. Header values
    /// (keys) are marked sensitive and appear in no error or log.
    pub async fn get(
        &self,
        url: &str,
        query: &[(&str, String)],
        headers: &[(HeaderName, String)],
    ) -> Result<Reply, UpstreamError> {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                UpstreamError::new(
                    self.provider,
                    UpstreamErrorKind::Auth,
                    format!("invalid characters in header {name}"),
                )
            })?;
            value.set_sensitive(true);
            header_map.insert(name.clone(), value);
        }
        let mut backoff = Backoff::new(self.config.backoff, self.config.backoff_max);
        loop {
            let failed = match self.once(url, query, &header_map).await {
                Ok(reply) => return Ok(reply),
                Err(failed) => failed,
            };
            let attempt = backoff.attempt();
            if !failed.error.is_transient() || attempt >= self.config.retries {
                return Err(failed.error);
            }
            // The provider's `Retry-After` wins when it is within the cap; beyond it, give up.
            let Some(wait) = backoff.next_delay_or(failed.retry_after) else {
                return Err(failed.error);
            };
            self.metrics
                .retries
                .with_label_values(&[self.provider])
                .inc();
            tracing::warn!(provider = self.provider, attempt, wait = ?wait, error = %failed.error, "upstream call failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(
        &self,
        url: &str,
        query: &[(&str, String)],
        headers: &HeaderMap,
    ) -> Result<Reply, Attempt> {
        let started = Instant::now();
        let result = self.fetch(url, query, headers).await;
        self.metrics
            .request_timer(self.provider)
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(a) => a.error.reason(),
        };
        self.metrics
            .requests
            .with_label_values(&[self.provider, outcome])
            .inc();
        result
    }

    async fn fetch(
        &self,
        url: &str,
        query: &[(&str, String)],
        headers: &HeaderMap,
    ) -> Result<Reply, Attempt> {
        let fail = |kind, message: String| Attempt {
            error: UpstreamError::new(self.provider, kind, message),
            retry_after: None,
        };
        let transport = |e: reqwest::Error| {
            let kind = if e.is_timeout() {
                UpstreamErrorKind::Timeout
            } else {
                UpstreamErrorKind::Transport
            };
            // `without_url`: the query may hold a key.
            fail(kind, e.without_url().to_string())
        };
        let mut response = self
            .client
            .get(url)
            .query(query)
            .headers(headers.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(fail(
                    UpstreamErrorKind::Rejected {
                        reason: "too_large",
                    },
                    format!("body larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let headers = response.headers().clone();
        if status == 429 {
            let retry_after = retry_after(&headers);
            return Err(Attempt {
                error: UpstreamError::new(
                    self.provider,
                    UpstreamErrorKind::RateLimited { retry_after },
                    format!("HTTP 429 (retry after {retry_after:?})"),
                ),
                retry_after,
            });
        }
        if status >= 500 {
            return Err(fail(
                UpstreamErrorKind::Status(status),
                format!("HTTP {status}"),
            ));
        }
        Ok(Reply {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(value)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

fn httpdate_parse(value: &str) -> Option<std::time::SystemTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(t.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO)); // in the past
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
