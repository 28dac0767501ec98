//! Prometheus metrics of provider calls and what providers answered. One [`UpstreamMetrics`]
//! per registry, shared by every provider client in the process (the poll-cycle metrics are
//! `topcoins_poller::PollerMetrics`, registered into the same registry).

use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use topcoins_runtime::metrics::{CALL_SECONDS_BUCKETS, counter, gauge, histogram};

#[derive(Clone)]
pub struct UpstreamMetrics {
    /// Upstream HTTP calls by provider and outcome (`ok` or an error reason).
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub retries: IntCounterVec,
    /// Credits (CoinMarketCap) or calls (others) spent, by provider.
    pub credits: IntCounterVec,
    /// Bodies rejected, by provider and reason; the last good snapshot stays.
    pub rejected: IntCounterVec,
    /// Bodies that stopped matching the expected shape, by provider and the JSON path that
    /// broke (array indices folded: `data[].quote`).
    pub shape_errors: IntCounterVec,
    /// What the provider says is left of its allowance, by provider and period.
    pub calls_left: IntGaugeVec,
    /// The price source in force (1) and the others (0).
    pub active_source: IntGaugeVec,
    pub failovers: IntCounterVec,
    pub price_events_published: IntCounterVec,
}

impl UpstreamMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: counter(
                registry,
                "topcoins_upstream_requests_total",
                "Upstream HTTP requests by provider and outcome",
                &["provider", "outcome"],
            )?,
            request_seconds: histogram(
                registry,
                "topcoins_upstream_request_duration_seconds",
                "Upstream HTTP request latency",
                &["provider"],
                CALL_SECONDS_BUCKETS,
            )?,
            retries: counter(
                registry,
                "topcoins_upstream_retries_total",
                "Upstream requests retried",
                &["provider"],
            )?,
            credits: counter(
                registry,
                "topcoins_upstream_credits_used_total",
                "Provider credits (CoinMarketCap) or calls (others) spent",
                &["provider"],
            )?,
            rejected: counter(
                registry,
                "topcoins_upstream_rejected_total",
                "Upstream bodies rejected, by provider and reason",
                &["provider", "reason"],
            )?,
            shape_errors: counter(
                registry,
                "topcoins_upstream_shape_errors_total",
                "Provider bodies not matching the expected shape, by provider and JSON path",
                &["provider", "path"],
            )?,
            calls_left: gauge(
                registry,
                "topcoins_upstream_calls_left",
                "Provider allowance left, by provider and period",
                &["provider", "period"],
            )?,
            active_source: gauge(
                registry,
                "topcoins_price_source_active",
                "1 for the price source in use, 0 for the others",
                &["source"],
            )?,
            failovers: counter(
                registry,
                "topcoins_price_failovers_total",
                "Switches of the price source, by the source switched to",
                &["to"],
            )?,
            price_events_published: counter(
                registry,
                "topcoins_price_events_published_total",
                "Per-coin price events published",
                &["source"],
            )?,
        })
    }

    /// A histogram child for one provider, for timing a call.
    pub fn request_timer(&self, provider: &str) -> Histogram {
        self.request_seconds.with_label_values(&[provider])
    }
}
