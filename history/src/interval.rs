//! The six candle intervals and the UTC buckets they cut time into.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How long one candle lasts. Every interval divides a day, and the Unix epoch is a UTC
/// midnight, so a bucket aligned to the epoch is aligned in UTC too (`1d` buckets start at
/// 00:00 UTC, `4h` ones at 00, 04, … 20 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M5,
    M15,
    H1,
    H4,
    D1,
}

impl Interval {
    /// Every interval, finest first: the order a sample is applied in.
    pub const ALL: [Interval; 6] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::H4,
        Interval::D1,
    ];

    /// The name in the API and in the database's `span` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::H4 => "4h",
            Interval::D1 => "1d",
        }
    }

    /// The length of one bucket in milliseconds.
    pub const fn millis(self) -> i64 {
        match self {
            Interval::M1 => MINUTE_MS,
            Interval::M5 => 5 * MINUTE_MS,
            Interval::M15 => 15 * MINUTE_MS,
            Interval::H1 => HOUR_MS,
            Interval::H4 => 4 * HOUR_MS,
            Interval::D1 => DAY_MS,
        }
    }

    /// The start of the bucket holding `ms` (Unix milliseconds). Floors towards the past for
    /// times before 1970 too, so every bucket is `[start, start + millis)`.
    pub const fn bucket_start(self, ms: i64) -> i64 {
        let len = self.millis();
        ms - ms.rem_euclid(len)
    }

    /// How long candles of this interval are kept by default (issue 11): `None` is forever.
    pub const fn default_retention(self) -> Option<Duration> {
        const DAY: u64 = 24 * 3600;
        match self {
            Interval::M1 => Some(Duration::from_secs(2 * DAY)),
            Interval::M5 => Some(Duration::from_secs(14 * DAY)),
            Interval::M15 => Some(Duration::from_secs(60 * DAY)),
            Interval::H1 => Some(Duration::from_secs(2 * 365 * DAY)),
            Interval::H4 | Interval::D1 => None,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| Error::UnknownInterval(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for i in Interval::ALL {
            assert_eq!(i.to_string().parse::<Interval>().unwrap(), i);
        }
        for bad in ["", "1M", "2m", "1w", " 1m", "60s"] {
            assert!(matches!(
                bad.parse::<Interval>(),
                Err(Error::UnknownInterval(_))
            ));
        }
    }

    #[test]
    fn buckets_are_aligned_in_utc() {
        // 2025-12-01T13:47:12.345Z
        let t = 1_764_596_832_345;
        assert_eq!(Interval::M1.bucket_start(t), 1_764_596_820_000); // 13:47
        assert_eq!(Interval::M15.bucket_start(t), 1_764_596_700_000); // 13:45
        assert_eq!(Interval::H4.bucket_start(t), 1_764_590_400_000); // 12:00
        assert_eq!(Interval::D1.bucket_start(t), 1_764_547_200_000); // 00:00
        assert_eq!(Interval::M1.bucket_start(-1), -60_000);
    }

    proptest! {
        #[test]
        fn bucket_start_is_the_aligned_floor(ms in -10_000_000_000_000i64..10_000_000_000_000, i in 0usize..6) {
            let interval = Interval::ALL[i];
            let start = interval.bucket_start(ms);
            prop_assert_eq!(start.rem_euclid(interval.millis()), 0);
            prop_assert!(start <= ms && ms < start + interval.millis());
            prop_assert_eq!(interval.bucket_start(start), start);
            // A finer bucket lies inside the coarser one that holds it.
            for finer in Interval::ALL.into_iter().filter(|f| *f < interval) {
                prop_assert_eq!(interval.bucket_start(finer.bucket_start(ms)), start);
            }
        }
    }
}
