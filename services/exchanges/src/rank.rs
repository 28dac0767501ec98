//! The rank of each tracked metric (issue 12): the standard deviation of its samples over the
//! last 24 h, ranked among all tracked metrics of the same kind, largest first.
//!
//! - **Samples**: one per metric per poll, unchanged polls included ([`Samples::record`] is
//!   fed by every successful poll of every exchange, not only by the polls that announced
//!   something), kept for [`WINDOW`].
//! - **Standard deviation**: the sample standard deviation (n − 1 in the denominator), so a
//!   metric with fewer than two samples in the window has none (`stddev_24h: null`).
//! - **Positions**: largest first; ties share a position, and the next one skips as many
//!   places as shared (competition ranking: 300, 200, 200, 100 are 1, 2, 2, 4); metrics without
//!   a standard deviation share the last position, after every metric that has one. `of` is
//!   the number of metrics of the kind.
//!
//! The defining example: volume standard deviations of 100, 200 and 300 for three pairs give
//! them positions 3, 2 and 1 of 3 (the test below).

use std::collections::{BTreeMap, VecDeque};

use topcoins_schemas::MetricKind;

/// The span of samples a standard deviation covers.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A metric: exchange, pair, kind.
pub type MetricKey = (&'static str, compact_str::CompactString, MetricKind);

/// One metric's rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    pub position: u32,
    pub of: u32,
    pub stddev: Option<f64>,
}

/// One metric's samples in the window, with running sums for the standard deviation.
#[derive(Debug, Default, Clone)]
struct Series {
    samples: VecDeque<(i64, f64)>,
}

impl Series {
    fn push(&mut self, time: i64, value: f64) {
        // Samples come in time order per metric; a repeat of the same time replaces.
        if let Some(last) = self.samples.back_mut()
            && last.0 >= time
        {
            if last.0 == time {
                last.1 = value;
            }
            return;
        }
        self.samples.push_back((time, value));
    }

    fn evict(&mut self, now: i64) {
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| *t <= now - WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    /// The sample standard deviation, two passes (exact enough for prices in the millions).
    fn stddev(&self) -> Option<f64> {
        let n = self.samples.len();
        if n < 2 {
            return None;
        }
        let mean = self.samples.iter().map(|(_, v)| v).sum::<f64>() / n as f64;
        let ss: f64 = self
            .samples
            .iter()
            .map(|(_, v)| (v - mean) * (v - mean))
            .sum();
        Some((ss / (n - 1) as f64).sqrt())
    }
}

/// Every tracked metric's samples of the last 24 h.
#[derive(Debug, Default)]
pub struct Samples {
    series: BTreeMap<MetricKey, Series>,
}

impl Samples {
    /// A poll's value of a metric at `time` (Unix ms).
    pub fn record(&mut self, key: MetricKey, time: i64, value: f64) {
        self.series.entry(key).or_default().push(time, value);
    }

    /// Forgets metrics that are no longer tracked and samples older than the window.
    pub fn retain(&mut self, now: i64, tracked: impl Fn(&MetricKey) -> bool) {
        self.series.retain(|k, s| {
            s.evict(now);
            tracked(k) && !s.samples.is_empty()
        });
    }

    /// Every metric's rank, as of `now`.
    pub fn ranks(&mut self, now: i64) -> BTreeMap<MetricKey, Rank> {
        for s in self.series.values_mut() {
            s.evict(now);
        }
        let deviations = self.series.iter().map(|(k, s)| (k.clone(), s.stddev()));
        rank(deviations)
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Ranks metrics by their standard deviations within each kind (see the module docs).
pub fn rank(
    deviations: impl IntoIterator<Item = (MetricKey, Option<f64>)>,
) -> BTreeMap<MetricKey, Rank> {
    let mut by_kind: BTreeMap<MetricKind, Vec<(MetricKey, Option<f64>)>> = BTreeMap::new();
    for (key, d) in deviations {
        by_kind
            .entry(key.2)
            .or_default()
            .push((key, d.filter(|d| d.is_finite())));
    }
    let mut out = BTreeMap::new();
    for (_, mut metrics) in by_kind {
        let of = metrics.len() as u32;
        // Largest first, those without one last.
        metrics.sort_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let mut position = 0u32;
        let mut previous: Option<Option<f64>> = None;
        for (i, (key, d)) in metrics.into_iter().enumerate() {
            if previous != Some(d) {
                position = i as u32 + 1;
                previous = Some(d);
            }
            out.insert(
                key,
                Rank {
                    position,
                    of,
                    stddev: d,
                },
            );
        }
    }
    out
}

/// Ranks as the ranks snapshot lists them, by metric id (`exchange:pair:metric`).
pub fn ranked_metrics(ranks: BTreeMap<MetricKey, Rank>) -> Vec<topcoins_schemas::RankedMetric> {
    ranks
        .into_iter()
        .map(
            |((exchange, pair, kind), r)| topcoins_schemas::RankedMetric {
                id: format!("{exchange}:{pair}:{}", kind.as_str()).into(),
                position: r.position,
                of: r.of,
                stddev_24h: r.stddev,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(pair: &str, kind: MetricKind) -> MetricKey {
        ("kraken", pair.into(), kind)
    }

    #[test]
    fn the_defining_example() {
        let ranks = rank([
            (key("a-usd", MetricKind::Volume), Some(100.0)),
            (key("b-usd", MetricKind::Volume), Some(200.0)),
            (key("c-usd", MetricKind::Volume), Some(300.0)),
        ]);
        let positions: Vec<(u32, u32)> = ["a-usd", "b-usd", "c-usd"]
            .iter()
            .map(|p| {
                let r = ranks[&key(p, MetricKind::Volume)];
                (r.position, r.of)
            })
            .collect();
        assert_eq!(positions, [(3, 3), (2, 3), (1, 3)]);
    }

    #[test]
    fn ties_share_and_too_few_samples_go_last() {
        let ranks = rank([
            (key("a-usd", MetricKind::Price), Some(5.0)),
            (key("b-usd", MetricKind::Price), Some(9.0)),
            (key("c-usd", MetricKind::Price), Some(5.0)),
            (key("d-usd", MetricKind::Price), None),
            (key("e-usd", MetricKind::Price), None),
            (key("a-usd", MetricKind::Volume), None),
        ]);
        let p = |pair: &str, kind| ranks[&key(pair, kind)].position;
        assert_eq!(p("b-usd", MetricKind::Price), 1);
        assert_eq!(p("a-usd", MetricKind::Price), 2);
        assert_eq!(p("c-usd", MetricKind::Price), 2);
        assert_eq!(p("d-usd", MetricKind::Price), 4);
        assert_eq!(p("e-usd", MetricKind::Price), 4);
        assert_eq!(ranks[&key("a-usd", MetricKind::Price)].of, 5);
        // Another kind is ranked on its own.
        assert_eq!(ranks[&key("a-usd", MetricKind::Volume)].position, 1);
        assert_eq!(ranks[&key("a-usd", MetricKind::Volume)].of, 1);
    }

    #[test]
    fn samples_cover_the_last_day_unchanged_polls_included() {
        let mut s = Samples::default();
        let k = key("btc-usd", MetricKind::Price);
        s.record(k.clone(), 0, 10.0);
        assert_eq!(s.ranks(0)[&k].stddev, None, "one sample: none");
        for i in 1..4 {
            s.record(k.clone(), i * 60_000, 10.0); // unchanged polls count
        }
        s.record(k.clone(), 4 * 60_000, 20.0);
        // 10, 10, 10, 10, 20: mean 12, squared deviations 4 · 4 + 64 = 80, over n − 1 = 4: 20.
        let sd = s.ranks(4 * 60_000)[&k].stddev.unwrap();
        assert!((sd - 20f64.sqrt()).abs() < 1e-12, "{sd}");
        // A day later only the last sample is in the window.
        assert_eq!(s.ranks(WINDOW_MS + 4 * 60_000 - 1)[&k].stddev, None);
        s.retain(2 * WINDOW_MS, |_| true);
        assert!(s.is_empty());
    }

    /// The straightforward reference: for each metric, count the metrics of its kind whose
    /// standard deviation is strictly larger (none counts as smaller than any), plus one.
    fn reference(all: &[(MetricKey, Option<f64>)]) -> BTreeMap<MetricKey, Rank> {
        let mut out = BTreeMap::new();
        for (k, d) in all {
            let same: Vec<&Option<f64>> = all
                .iter()
                .filter(|(o, _)| o.2 == k.2)
                .map(|(_, d)| d)
                .collect();
            let ahead = same
                .iter()
                .filter(|o| match (o, d) {
                    (Some(x), Some(y)) => x > y,
                    (Some(_), None) => true,
                    _ => false,
                })
                .count();
            out.insert(
                k.clone(),
                Rank {
                    position: ahead as u32 + 1,
                    of: same.len() as u32,
                    stddev: *d,
                },
            );
        }
        out
    }

    fn naive_stddev(values: &[f64]) -> Option<f64> {
        if values.len() < 2 {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
    }

    proptest! {
        #[test]
        fn rank_equals_the_reference(
            metrics in proptest::collection::btree_map(
                (0u8..6, 0usize..3),
                proptest::option::of(prop_oneof![Just(1.0), Just(2.0), 0.0f64..1e6]),
                0..40,
            )
        ) {
            let kinds = [MetricKind::Price, MetricKind::Volume, MetricKind::High];
            let all: Vec<(MetricKey, Option<f64>)> = metrics
                .into_iter()
                .map(|((pair, kind), d)| (key(&format!("p{pair}-usd"), kinds[kind]), d))
                .collect();
            prop_assert_eq!(rank(all.clone()), reference(&all));
        }

        #[test]
        fn stddev_equals_the_naive_one(values in proptest::collection::vec(-1e6f64..1e6, 0..50)) {
            let mut s = Samples::default();
            let k = key("x-usd", MetricKind::Price);
            for (i, v) in values.iter().enumerate() {
                s.record(k.clone(), i as i64 * 1000, *v);
            }
            let got = s.ranks(values.len() as i64 * 1000).get(&k).and_then(|r| r.stddev);
            let want = naive_stddev(&values);
            match (got, want) {
                (Some(a), Some(b)) => prop_assert!((a - b).abs() <= 1e-6 * b.max(1.0), "{a} {b}"),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }
}
