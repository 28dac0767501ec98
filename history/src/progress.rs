//! What the backfill has fetched, per coin and interval, so a restart does not fetch it again.

use compact_str::CompactString;

use crate::Interval;

/// The span of buckets a provider was asked about for one coin and interval, whatever it
/// answered (zero-filled rows included): `oldest..=newest`, bucket starts in Unix ms.
/// `complete` says nothing older is worth asking for (the depth wanted was reached, or the
/// provider's data starts inside the span). Written after the candles it covers, so a crash
/// between the two costs a fetch again, never a hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillProgress {
    /// Upper case, as candles are keyed.
    pub symbol: CompactString,
    pub interval: Interval,
    pub oldest: i64,
    pub newest: i64,
    pub complete: bool,
    /// When the newest end was last fetched, Unix ms.
    pub fetched_at: i64,
}
