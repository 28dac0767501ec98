//! A metric's trailing samples: one per poll, oldest first, with running sums so that the
//! average over any window is two lookups, whatever the window's length. The sums are
//! compensated (a high and a low part, Knuth's two-sum), so the difference of two of them is
//! the window's sum to within a rounding of that sum, not of the whole series' (a small
//! window after large values loses nothing).

use std::collections::VecDeque;

use topcoins_schemas::alert::MIN_COVERAGE;

/// Gaps the poll interval is estimated from (their median): a few missed polls do not move it.
const INTERVAL_GAPS: usize = 9;

/// One metric's samples.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// `(time ms, value, sum of values up to and including this one as high and low part)`.
    samples: VecDeque<(i64, f64, f64, f64)>,
    /// The sum of the samples trimmed away (what the first one's sum starts from).
    base: (f64, f64),
    /// How many samples were trimmed away: `samples[i]` is sample `popped + i` of the series.
    popped: u64,
    /// The poll interval as last estimated ([`Series::interval`]), and the samples pushed
    /// since: it is estimated again every [`INTERVAL_REFRESH`] samples, not on every one.
    interval: Option<i64>,
    since_estimate: u32,
}

/// Samples between two estimates of the poll interval.
const INTERVAL_REFRESH: u32 = 8;

/// What the samples of a window before a time say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub count: usize,
    pub average: f64,
    /// The oldest sample in the window.
    pub first: f64,
    /// Whether the window holds at least [`MIN_COVERAGE`] of the samples it should.
    pub covered: bool,
}

impl Series {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample's time.
    pub fn last_time(&self) -> Option<i64> {
        self.samples.back().map(|s| s.0)
    }

    /// Adds a sample; `false` (and nothing added) unless it is newer than the newest.
    pub fn push(&mut self, time: i64, value: f64) -> bool {
        if !value.is_finite() || self.last_time().is_some_and(|t| time <= t) {
            return false;
        }
        let (hi, lo) = self.samples.back().map_or(self.base, |s| (s.2, s.3));
        let sum = hi + value;
        let b = sum - hi;
        let error = (hi - (sum - b)) + (value - b);
        self.samples.push_back((time, value, sum, lo + error));
        self.since_estimate += 1;
        if self.interval.is_none() || self.since_estimate >= INTERVAL_REFRESH {
            self.interval = self.estimate_interval();
            self.since_estimate = 0;
        }
        true
    }

    /// Drops samples at or before `before`.
    pub fn trim(&mut self, before: i64) {
        while self.samples.front().is_some_and(|s| s.0 <= before) {
            if let Some(s) = self.samples.pop_front() {
                self.base = (s.2, s.3);
                self.popped += 1;
            }
        }
        if self.samples.len() * 4 < self.samples.capacity() && self.samples.capacity() > 64 {
            self.samples.shrink_to_fit();
        }
    }

    /// The poll interval as the samples show it: the median of the last gaps (estimated
    /// again every few samples).
    pub fn interval(&self) -> Option<i64> {
        self.interval
    }

    fn estimate_interval(&self) -> Option<i64> {
        let n = self.samples.len();
        if n < 2 {
            return None;
        }
        let from = n.saturating_sub(INTERVAL_GAPS + 1);
        let mut gaps = [0i64; INTERVAL_GAPS];
        let mut len = 0;
        for i in from + 1..n {
            gaps[len] = self.samples[i].0 - self.samples[i - 1].0;
            len += 1;
        }
        let gaps = &mut gaps[..len];
        gaps.sort_unstable();
        Some(gaps[len / 2])
    }

    /// The samples in `(time - window, time)`: the window before a sample at `time`, that
    /// sample excluded. `None` if there are none.
    pub fn stats(&self, time: i64, window: i64) -> Option<WindowStats> {
        let start = self.samples.partition_point(|s| s.0 <= time - window);
        let end = self.samples.partition_point(|s| s.0 < time);
        self.between(start, end, window)
    }

    /// [`Series::stats`] for a sample newer than every one held, with `cursor` where the
    /// window started the last time (a sample number, kept by the caller per window): windows
    /// only move forward, so the start is found by stepping from there, and the end is the
    /// newest sample. What one evaluation touches is the window's two ends, not a search
    /// through it (the samples of 10,000 metrics do not fit in a cache).
    pub fn stats_after(&self, cursor: &mut u64, time: i64, window: i64) -> Option<WindowStats> {
        let mut start = usize::try_from(cursor.saturating_sub(self.popped)).unwrap_or(usize::MAX);
        start = start.min(self.samples.len());
        while start < self.samples.len() && self.samples[start].0 <= time - window {
            start += 1;
        }
        *cursor = self.popped + start as u64;
        self.between(start, self.samples.len(), window)
    }

    fn between(&self, start: usize, end: usize, window: i64) -> Option<WindowStats> {
        if end <= start {
            return None;
        }
        let (hi, lo) = if start == 0 {
            self.base
        } else {
            (self.samples[start - 1].2, self.samples[start - 1].3)
        };
        let last = &self.samples[end - 1];
        let count = end - start;
        let average = ((last.2 - hi) + (last.3 - lo)) / count as f64;
        let covered = self.interval().is_some_and(|interval| {
            let expected = (window / interval.max(1)) as f64;
            count as f64 >= MIN_COVERAGE * expected
        });
        Some(WindowStats {
            count,
            average,
            first: self.samples[start].1,
            covered,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_current_sample_is_not_in_its_window() {
        let mut s = Series::default();
        for i in 0..60 {
            assert!(s.push(i * 1000, 10.0));
        }
        let st = s.stats(60_000, 60_000).unwrap();
        // (0, 60 s): 59 samples (the one at 0 is on the edge, out).
        assert_eq!(st.count, 59);
        assert_eq!(st.average, 10.0);
        assert!(st.covered);
        assert!(!s.push(59_000, 1.0), "an older sample is not taken");
    }

    #[test]
    fn a_gap_leaves_the_window_uncovered() {
        let mut s = Series::default();
        // 10 samples a second apart, then nothing for 50 s: 10 of the 60 a minute should hold.
        for i in 0..10 {
            s.push(i * 1000, 1.0);
        }
        let st = s.stats(60_000, 60_000).unwrap();
        assert!(!st.covered);
        // 54 of 60 is 90 %: covered.
        let mut s = Series::default();
        for i in 6..60 {
            s.push(i * 1000, 1.0);
        }
        assert!(s.stats(60_000, 60_000).unwrap().covered);
        let mut s = Series::default();
        for i in 7..60 {
            s.push(i * 1000, 1.0);
        }
        assert!(!s.stats(60_000, 60_000).unwrap().covered);
    }

    proptest! {
        /// Stepping the window's start forward gives what a search gives.
        #[test]
        fn sliding_equals_searching(
            gaps in prop::collection::vec(1i64..50, 1..300),
            window in 1i64..500,
            keep in 500i64..2000,
        ) {
            let mut s = Series::default();
            let mut cursor = 0;
            let mut t = 0;
            for (i, g) in gaps.iter().enumerate() {
                t += g;
                if !s.is_empty() {
                    prop_assert_eq!(s.stats_after(&mut cursor, t, window), s.stats(t, window));
                }
                s.push(t, (i % 13) as f64 * 10.0);
                s.trim(t - keep);
            }
        }

        /// The running sums give the average a direct sum over the window gives.
        #[test]
        fn averages_equal_the_direct_sum(
            values in prop::collection::vec(0.0f64..1e6, 1..300),
            window in 1i64..400,
            trim in 0i64..100,
        ) {
            let mut s = Series::default();
            for (i, v) in values.iter().enumerate() {
                s.push(i as i64, *v);
            }
            s.trim(trim);
            let time = values.len() as i64;
            let inside: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as i64) > trim && (*i as i64) > time - window)
                .map(|(_, v)| *v)
                .collect();
            match s.stats(time, window) {
                None => prop_assert!(inside.is_empty()),
                Some(st) => {
                    prop_assert_eq!(st.count, inside.len());
                    let direct = inside.iter().sum::<f64>() / inside.len() as f64;
                    prop_assert!((st.average - direct).abs() <= 1e-6 * direct.abs().max(1.0));
                    prop_assert_eq!(st.first, inside[0]);
                }
            }
        }
    }
}
