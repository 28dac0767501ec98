//! Errors of upstream calls. Messages never contain a URL's query or a header, so an API key
//! cannot reach a log line through them.

use std::time::Duration;

/// What kind of failure, for callers and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect or the connection broke.
    Transport,
    /// No complete answer within the timeout.
    Timeout,
    /// The provider said no because of the key (401, 403, CoinMarketCap 1001/1002,
    /// CryptoCompare type 1). Retrying will not help.
    Auth,
    /// Rate or credit limit hit (429, CoinMarketCap 1008–1011, CryptoCompare type 99).
    RateLimited { retry_after: Option<Duration> },
    /// Any other non-success HTTP status.
    Status(u16),
    /// The provider answered with its own error body (CoinMarketCap `status.error_code`,
    /// CryptoCompare `"Response":"Error"`).
    Provider { code: i64 },
    /// The body is not what the endpoint returns: the JSON path that broke is in the message.
    Malformed { path: String },
    /// The body parsed but the data is unusable (no coins, bad numbers, a shrunken universe).
    Rejected { reason: &'static str },
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct UpstreamError {
    pub provider: &'static str,
    pub kind: UpstreamErrorKind,
    pub message: String,
}

impl UpstreamError {
    pub fn new(
        provider: &'static str,
        kind: UpstreamErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            kind,
            message: message.into(),
        }
    }

    /// What a reply's HTTP status alone says, for a reply without a usable error body: 401 and
    /// 403 are about the key (the one place that rule is written), any other is its status.
    pub fn from_status(provider: &'static str, http: u16) -> Self {
        let kind = match http {
            401 | 403 => UpstreamErrorKind::Auth,
            s => UpstreamErrorKind::Status(s),
        };
        Self::new(provider, kind, format!("HTTP {http}"))
    }

    /// Whether an HTTP status is the provider refusing the key.
    pub fn is_auth_status(http: u16) -> bool {
        matches!(http, 401 | 403)
    }

    /// Data that parsed but cannot become a snapshot.
    pub fn rejected(provider: &'static str, e: &topcoins_schemas::SnapshotError) -> Self {
        Self::new(
            provider,
            UpstreamErrorKind::Rejected { reason: e.reason() },
            e.to_string(),
        )
    }

    /// Worth trying again soon: the failure is about the moment, not the request.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            UpstreamErrorKind::Transport
            | UpstreamErrorKind::Timeout
            | UpstreamErrorKind::RateLimited { .. } => true,
            UpstreamErrorKind::Status(s) => *s >= 500,
            _ => false,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match &self.kind {
            UpstreamErrorKind::Transport => "transport",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Auth => "auth",
            UpstreamErrorKind::RateLimited { .. } => "rate_limited",
            UpstreamErrorKind::Status(_) => "http_status",
            UpstreamErrorKind::Provider { .. } => "provider_error",
            UpstreamErrorKind::Malformed { .. } => "malformed",
            UpstreamErrorKind::Rejected { reason } => reason,
        }
    }
}
