//! Types shared by every topcoins service, and nothing that does I/O.
//!
//! - [`kind`]: [`Kind`], the open set of snapshot kinds (a name per [`Snapshot`] type).
//! - [`hash`]: [`SnapshotHash`], the blake3 content address of a snapshot's canonical bytes.
//! - [`snapshot`]: the normalised [`PriceSnapshot`] and [`RankingSnapshot`] the actors produce,
//!   their canonical encoding ([`Snapshot::canonical_bytes`]) and the rule that decides which
//!   coin a symbol names when several share it ([`PriceSnapshot::by_symbol`]).
//! - [`ticker`]: exchange tickers ([`TickerSnapshot`], one kind per [`Exchange`]) and the
//!   seven [`MetricKind`]s of a pair.
//! - [`notice`]: the small messages that travel on the bus ([`HashNotice`], [`PriceEvent`]).
//! - [`alert`]: alert rules as written, their checks, and the bodies alerts are delivered in.
//! - [`api`]: the HTTP response and error bodies, for clients and tests.

pub mod alert;
pub mod api;
pub mod hash;
pub mod kind;
pub mod notice;
pub mod snapshot;
pub mod ticker;

/// The string type of coin ids, symbols and names: held inline up to 24 bytes, so decoding
/// a snapshot allocates for almost none of them.
pub use compact_str::CompactString;
pub use hash::{HashParseError, SnapshotHash};
pub use kind::Kind;
pub use notice::{HashNotice, NoticeError, PriceEvent};
pub use snapshot::{
    CANONICAL_MAGIC, Caseless, PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, Snapshot,
    SnapshotError, SymbolIndex,
};
pub use ticker::{
    Binance, Coinbase, Exchange, Kraken, MarketsSnapshot, MetricKind, PairTicker, RankedMetric,
    RanksSnapshot, TickerSnapshot, TickerWindow,
};
