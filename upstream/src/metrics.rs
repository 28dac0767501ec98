//! Prometheus metrics of upstream calls and poll cycles. One [`UpstreamMetrics`] per
//! registry, shared by every poller in the process.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct UpstreamMetrics {
    /// Upstream HTTP calls by provider and outcome (`ok` or an error reason).
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub retries: IntCounterVec,
    /// Credits (CoinMarketCap) or calls (others) spent, by provider.
    pub credits: IntCounterVec,
    /// Poll cycles by kind and outcome: `changed`, `unchanged`, or an error reason.
    pub cycles: IntCounterVec,
    pub cycle_seconds: HistogramVec,
    /// Cycles that took more than half their interval, by kind.
    pub slow_cycles: IntCounterVec,
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
    /// Pollers restarted by their supervisor after a failure, by kind.
    pub actor_restarts: IntCounterVec,
    pub notices_published: IntCounterVec,
    pub price_events_published: IntCounterVec,
    pub snapshot_coins: IntGaugeVec,
    pub snapshot_bytes: IntGaugeVec,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let buckets = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl UpstreamMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
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
            cycles: counter(
                registry,
                "topcoins_poll_cycles_total",
                "Poll cycles by kind and outcome",
                &["kind", "outcome"],
            )?,
            cycle_seconds: histogram(
                registry,
                "topcoins_poll_cycle_duration_seconds",
                "Duration of a whole poll cycle",
                &["kind"],
            )?,
            slow_cycles: counter(
                registry,
                "topcoins_poll_slow_cycles_total",
                "Poll cycles longer than half their interval",
                &["kind"],
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
            actor_restarts: counter(
                registry,
                "topcoins_actor_restarts_total",
                "Pollers restarted after a failure, by kind",
                &["kind"],
            )?,
            notices_published: counter(
                registry,
                "topcoins_notices_published_total",
                "Hash notices published",
                &["kind"],
            )?,
            price_events_published: counter(
                registry,
                "topcoins_price_events_published_total",
                "Per-coin price events published",
                &["source"],
            )?,
            snapshot_coins: gauge(
                registry,
                "topcoins_snapshot_coins",
                "Coins in the latest announced snapshot",
                &["kind"],
            )?,
            snapshot_bytes: gauge(
                registry,
                "topcoins_snapshot_bytes",
                "Canonical size of the latest announced snapshot",
                &["kind"],
            )?,
        };
        // Known label values start at zero, so rates and "never happened" are visible at once.
        for kind in ["prices", "ranking"] {
            metrics.actor_restarts.with_label_values(&[kind]);
            metrics.notices_published.with_label_values(&[kind]);
            metrics.slow_cycles.with_label_values(&[kind]);
        }
        Ok(metrics)
    }

    /// A histogram child for one provider, for timing a call.
    pub fn request_timer(&self, provider: &str) -> Histogram {
        self.request_seconds.with_label_values(&[provider])
    }
}
