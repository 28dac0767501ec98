//! Prometheus metrics of poll cycles. One [`PollerMetrics`] per registry, shared by every
//! poller in the process (under `topcoins up`, the price and the ranking one). What the
//! providers answered is counted in `topcoins_upstream::UpstreamMetrics`, registered into the
//! same registry next to these.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use topcoins_runtime::metrics::{CALL_SECONDS_BUCKETS, counter, gauge, histogram};

#[derive(Clone)]
pub struct PollerMetrics {
    /// Poll cycles by kind and outcome: `changed`, `unchanged`, `standby`, or an error reason.
    pub cycles: IntCounterVec,
    pub cycle_seconds: HistogramVec,
    /// Cycles that took more than half their interval, by kind.
    pub slow_cycles: IntCounterVec,
    /// Pollers restarted by their supervisor after a failure, by kind.
    pub actor_restarts: IntCounterVec,
    pub notices_published: IntCounterVec,
    /// Still-current notices published (polls of a confirmed kind that found it unchanged).
    pub still_current: IntCounterVec,
    pub snapshot_coins: IntGaugeVec,
    pub snapshot_bytes: IntGaugeVec,
}

impl PollerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
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
                CALL_SECONDS_BUCKETS,
            )?,
            slow_cycles: counter(
                registry,
                "topcoins_poll_slow_cycles_total",
                "Poll cycles longer than half their interval",
                &["kind"],
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
            still_current: counter(
                registry,
                "topcoins_still_current_published_total",
                "Still-current notices published: polls that confirmed the last announced data",
                &["kind"],
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both crates' metrics go into one registry: no name is registered twice.
    #[test]
    fn registers_next_to_the_upstream_metrics() {
        let registry = Registry::new();
        let upstream = topcoins_upstream::UpstreamMetrics::register(&registry).unwrap();
        let poller = PollerMetrics::register(&registry).unwrap();
        assert!(
            PollerMetrics::register(&registry).is_err(),
            "twice is an error"
        );
        poller
            .cycles
            .with_label_values(&["prices", "changed"])
            .inc();
        // A family is gathered once it has a series.
        upstream.requests.with_label_values(&["flaky", "ok"]).inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "topcoins_poll_cycles_total",
            "topcoins_actor_restarts_total",
            "topcoins_notices_published_total",
            "topcoins_upstream_requests_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
    }
}
