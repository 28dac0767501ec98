//! The recorder's settings: how long the bus keeps what it has not recorded, how long each
//! interval's candles are kept, how often retention runs.

use std::str::FromStr;
use std::time::Duration;

use topcoins_history::{Interval, Retention};

/// `--stream-retention` default: a recorder away for up to a day catches up without a gap.
pub const DEFAULT_STREAM_RETENTION: &str = "24h";
/// `--recorder-ack-wait` default.
pub const DEFAULT_ACK_WAIT: &str = "30s";
/// `--retention-every` default.
pub const DEFAULT_SWEEP_EVERY: &str = "10m";
/// `--record-retention` default: the metrics' records, kept a week (the ranks and the
/// watchlist read the last 24 h).
pub const DEFAULT_RECORD_RETENTION: &str = "7d";
/// `--rollup-every` default.
pub const DEFAULT_ROLLUP_EVERY: &str = "5m";

#[derive(Debug, Clone, clap::Args)]
pub struct RecorderConfig {
    /// How long the bus keeps notices (and the snapshots they name) that the recorder has not
    /// recorded yet: a recorder away for less catches up without a gap.
    #[arg(long = "stream-retention", env = "TOPCOINS_STREAM_RETENTION", default_value = DEFAULT_STREAM_RETENTION, value_parser = humantime::parse_duration)]
    pub stream_retention: Duration,
    /// How long a notice handed to the recorder may stay unacknowledged before NATS hands it
    /// out again (the recorder reports progress while it waits for the database).
    #[arg(long = "recorder-ack-wait", env = "TOPCOINS_RECORDER_ACK_WAIT", default_value = DEFAULT_ACK_WAIT, value_parser = humantime::parse_duration)]
    pub ack_wait: Duration,
    /// How long candles are kept, per interval: e.g. `1m=2d,5m=14d,1h=forever`. Intervals not
    /// named keep their defaults (1m 2 days, 5m 14 days, 15m 60 days, 1h 2 years, 4h and 1d
    /// forever).
    #[arg(long = "candle-retention", env = "TOPCOINS_CANDLE_RETENTION", default_value = "", value_parser = parse_retention)]
    pub candle_retention: CandleRetention,
    /// How often candles past their retention are deleted (in steps of at most 1000 rows, each
    /// its own short transaction).
    #[arg(long = "retention-every", env = "TOPCOINS_RETENTION_EVERY", default_value = DEFAULT_SWEEP_EVERY, value_parser = humantime::parse_duration)]
    pub sweep_every: Duration,
    /// How much recorded time (by the notices' `as_of`) passes between two roll-ups of the
    /// `1m` candles into the coarser intervals. Each snapshot writes only its `1m` rows; the
    /// API reads the coarser ones with the minutes not yet rolled up merged in, so this trades
    /// the roll-up's size against how many minutes a read merges (at most this many per
    /// coin). `0s` rolls up after every write.
    #[arg(long = "rollup-every", env = "TOPCOINS_ROLLUP_EVERY", default_value = DEFAULT_ROLLUP_EVERY, value_parser = humantime::parse_duration)]
    pub rollup_every: Duration,
    /// How long exchange metrics' records are kept (one per metric per poll).
    #[arg(long = "record-retention", env = "TOPCOINS_RECORD_RETENTION", default_value = DEFAULT_RECORD_RETENTION, value_parser = humantime::parse_duration)]
    pub record_retention: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            stream_retention: humantime::parse_duration(DEFAULT_STREAM_RETENTION)
                .expect("a valid default"),
            ack_wait: humantime::parse_duration(DEFAULT_ACK_WAIT).expect("a valid default"),
            candle_retention: CandleRetention::default(),
            sweep_every: humantime::parse_duration(DEFAULT_SWEEP_EVERY).expect("a valid default"),
            rollup_every: humantime::parse_duration(DEFAULT_ROLLUP_EVERY).expect("a valid default"),
            record_retention: humantime::parse_duration(DEFAULT_RECORD_RETENTION)
                .expect("a valid default"),
        }
    }
}

/// The retention of every interval: the defaults with what `--candle-retention` overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandleRetention(pub Retention);

fn parse_retention(s: &str) -> Result<CandleRetention, String> {
    s.parse()
}

impl FromStr for CandleRetention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut retention = Retention::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (interval, keep) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected INTERVAL=DURATION, e.g. 1m=2d"))?;
            let interval: Interval = interval.trim().parse().map_err(|e| format!("{e}"))?;
            let keep = match keep.trim() {
                "forever" | "0" => None,
                text => Some(
                    humantime::parse_duration(text)
                        .map_err(|e| format!("{part:?}: {e} (or `forever`)"))?,
                ),
            };
            for entry in retention.0.iter_mut() {
                if entry.0 == interval {
                    entry.1 = keep;
                }
            }
        }
        Ok(CandleRetention(retention))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_overrides_only_what_it_names() {
        let CandleRetention(r) = "1m=1h, 4h=30d,1d=forever".parse().unwrap();
        let get = |i: Interval| r.0.iter().find(|(j, _)| *j == i).unwrap().1;
        assert_eq!(get(Interval::M1), Some(Duration::from_secs(3600)));
        assert_eq!(get(Interval::H4), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(get(Interval::D1), None);
        assert_eq!(get(Interval::M5), Interval::M5.default_retention());
        assert_eq!(
            "".parse::<CandleRetention>().unwrap(),
            CandleRetention::default()
        );
        for bad in ["1m", "2m=1d", "1m=soon"] {
            assert!(bad.parse::<CandleRetention>().is_err(), "{bad}");
        }
    }
}
