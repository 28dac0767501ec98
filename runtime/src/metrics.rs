//! Registering Prometheus metrics. Each crate keeps its own metrics in its own `metrics.rs`
//! and builds them with these; a registry passed in (never the global one) lets two nodes in
//! one test process keep separate counts, and lets several crates register into the one
//! registry a process serves, as long as no two register the same name.

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Buckets for things that take milliseconds to tens of seconds: a provider call, a poll
/// cycle.
pub const CALL_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Registers `collector` into `registry` and hands it back, for metrics these helpers do not
/// cover (a float gauge, a metric without labels).
pub fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// An integer counter with `labels`, registered.
pub fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// An integer gauge with `labels`, registered.
pub fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

/// A histogram with `labels` and `buckets` (e.g. [`CALL_SECONDS_BUCKETS`]), registered.
pub fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, HistogramVec::new(opts, labels)?)
}

/// The Prometheus text exposition of `registry`, and its content type: what every `/metrics`
/// endpoint (the API node's, the actors', the simulator's) answers.
pub fn render(registry: &Registry) -> (&'static str, Vec<u8>) {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut body) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    (prometheus::TEXT_FORMAT, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_registers_once_per_registry() {
        let registry = Registry::new();
        let c = counter(&registry, "topcoins_test_total", "test", &["kind"]).unwrap();
        c.with_label_values(&["prices"]).inc();
        assert!(counter(&registry, "topcoins_test_total", "test", &["kind"]).is_err());
        // Another registry is another namespace.
        assert!(counter(&Registry::new(), "topcoins_test_total", "test", &["kind"]).is_ok());
        assert_eq!(registry.gather().len(), 1);
        assert_eq!(c.with_label_values(&["prices"]).get(), 1);
    }
}
