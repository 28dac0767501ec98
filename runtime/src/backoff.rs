//! Backoff between attempts: exponential with a cap and equal jitter.
//!
//! The *ceiling* of the n-th wait after a success (n from 0) is `first · 2ⁿ`, capped at `max`.
//! The wait itself is drawn with **equal jitter**: half the ceiling, plus a random part from
//! zero up to the other half, uniformly, to the nanosecond. So a wait always lies in
//! `[ceiling / 2, ceiling]`: never more than the cap, and never so short that many clients
//! that failed together hammer the server again together (as "full jitter", `[0, ceiling]`,
//! can), while still spreading them out.
//!
//! One [`Backoff`] serves every retry loop in topcoins: the HTTP client of providers (which
//! may also be told how long to wait, see [`Backoff::next_delay_or`]), opening the snapshot
//! store and the lease bucket ([`retry_until_shutdown`]), and the poller's supervisor between
//! restarts. (`backon`, the well-kept crate for this, can override a wait for `Retry-After`,
//! but draws its jitter on top of the delay rather than within it, and wants to own the loop;
//! the supervisor has no loop, only a timer per failure.)

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// Waits between attempts; see the module docs. Cheap to copy: a new loop starts from a copy
/// of a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// Waits handed out since the last [`Backoff::reset`].
    attempt: u32,
}

impl Backoff {
    /// Starts at `first` (the ceiling of the first wait), doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            attempt: 0,
        }
    }

    /// How many waits were handed out since the last reset: the number of the next retry,
    /// counting from 0.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the next wait: `first · 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The next wait, in `[ceiling / 2, ceiling]`; the one after it has twice the ceiling,
    /// up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// The next wait when the other side may have said how long to wait (`Retry-After`):
    /// what it `asked` if that is within the cap, `None` (give up) if it is longer, and the
    /// backoff's own [`Backoff::next_delay`] if it said nothing. Counts as an attempt either
    /// way, so the waits after it keep growing.
    pub fn next_delay_or(&mut self, asked: Option<Duration>) -> Option<Duration> {
        match asked {
            Some(asked) if asked > self.max => None,
            Some(asked) => {
                self.attempt = self.attempt.saturating_add(1);
                Some(asked)
            }
            None => Some(self.next_delay()),
        }
    }

    /// Starts over from the first ceiling, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let wait = equal_jitter(self.ceiling(), rng);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }
}

/// Half of `ceiling` plus a uniform random part up to the other half.
fn equal_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let half = ceiling / 2;
    // The other half is `ceiling - half`, not `half`: for an odd number of nanoseconds it is
    // one more, so the top of the range is the ceiling itself.
    let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rng.random_range(0..=spread))
}

/// Runs `op` until it succeeds, waiting out `backoff` after each failure (logged as `what` not
/// being available yet); `None` if `shutdown` fires during a wait. Services start before NATS
/// has everything they need, and wait here.
pub async fn retry_until_shutdown<T, E, Fut>(
    what: &'static str,
    mut backoff: Backoff,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    mut op: impl FnMut() -> Fut,
) -> Option<T>
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let error = match op().await {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        let attempt = backoff.attempt();
        let wait = backoff.next_delay();
        tracing::warn!(what, attempt, wait = ?wait, error = %error, "not available yet; retrying");
        tokio::select! {
            _ = &mut *shutdown => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    proptest! {
        /// Every wait lies in [ceiling / 2, ceiling], the ceiling doubles from `first` and
        /// never passes `max`.
        #[test]
        fn waits_lie_within_half_and_whole_ceiling(
            first_ms in 0u64..10_000,
            max_ms in 0u64..100_000,
            attempts in 1usize..80,
            seed: u64,
        ) {
            let (first, max) = (Duration::from_millis(first_ms), Duration::from_millis(max_ms));
            let mut backoff = Backoff::new(first, max);
            let mut rng = StdRng::seed_from_u64(seed);
            for n in 0..attempts {
                let expected = first
                    .saturating_mul(2u32.saturating_pow(n as u32))
                    .min(max);
                let ceiling = backoff.ceiling();
                prop_assert_eq!(ceiling, expected, "ceiling of attempt {}", n);
                let wait = backoff.next_delay_with(&mut rng);
                prop_assert!(wait >= ceiling / 2 && wait <= ceiling, "{:?} outside [{:?}/2, {:?}]", wait, ceiling, ceiling);
                prop_assert!(wait <= max);
            }
            prop_assert_eq!(backoff.attempt(), attempts as u32);
        }

        /// After a reset the next ceiling is the first one again.
        #[test]
        fn reset_starts_over(first_ms in 1u64..1_000, failures in 0u32..40) {
            let first = Duration::from_millis(first_ms);
            let mut backoff = Backoff::new(first, Duration::from_secs(10));
            for _ in 0..failures {
                backoff.next_delay();
            }
            backoff.reset();
            prop_assert_eq!(backoff.attempt(), 0);
            prop_assert_eq!(backoff.ceiling(), first);
        }

        /// A wait asked for within the cap is taken as is; beyond it, the retries end.
        #[test]
        fn asked_waits_are_taken_up_to_the_cap(asked_ms in 0u64..20_000) {
            let max = Duration::from_secs(8);
            let mut backoff = Backoff::new(250 * MS, max);
            let asked = Duration::from_millis(asked_ms);
            let got = backoff.next_delay_or(Some(asked));
            if asked <= max {
                prop_assert_eq!(got, Some(asked));
                prop_assert_eq!(backoff.attempt(), 1);
            } else {
                prop_assert_eq!(got, None);
                prop_assert_eq!(backoff.attempt(), 0);
            }
        }
    }

    #[test]
    fn both_ends_of_the_jitter_are_drawn() {
        // With a ceiling of 3 ns the waits are 1, 2 or 3 ns: the top is the ceiling itself.
        let mut rng = StdRng::seed_from_u64(7);
        let seen: std::collections::BTreeSet<u128> = (0..200)
            .map(|_| equal_jitter(Duration::from_nanos(3), &mut rng).as_nanos())
            .collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(equal_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn no_overflow_far_out() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::MAX);
        for _ in 0..100 {
            backoff.next_delay();
        }
        assert_eq!(
            backoff.ceiling(),
            Duration::from_secs(1).saturating_mul(u32::MAX)
        );
    }

    #[tokio::test]
    async fn retries_until_success_or_shutdown() {
        let calls = AtomicU32::new(0);
        let mut never = std::pin::pin!(std::future::pending::<()>());
        let got = retry_until_shutdown("thing", Backoff::new(MS, 4 * MS), &mut never, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 3 { Err("down") } else { Ok(n) } }
        })
        .await;
        assert_eq!(got, Some(3));

        let mut soon = std::pin::pin!(tokio::time::sleep(50 * MS));
        let got: Option<()> =
            retry_until_shutdown("thing", Backoff::new(MS, 4 * MS), &mut soon, || async {
                Err::<(), _>("down")
            })
            .await;
        assert_eq!(got, None);
    }
}
