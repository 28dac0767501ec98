//! The record of prices: candles per coin and interval, and the storage that keeps them.
//!
//! A price snapshot observed at `as_of` becomes one [`Sample`] per coin, each sample one
//! `1m` [`Candle`], and the candles of one snapshot one [`Batch`], written in one
//! transaction; the coarser [`Interval`]s (`5m` … `1d`, buckets aligned in UTC) are rolled up
//! from the minutes ([`rollup`]), and every read of them includes the minutes not yet rolled
//! up. Ranking snapshots add the rank and 24 h volume the same way. Backfilled candles (CryptoCompare's `histo*`) are stored as the
//! provider gave them, and a recorded candle replaces a backfilled one of its bucket.
//!
//! **Candles are keyed by symbol** (upper case), not by a provider's id: the API serves
//! `/v1/coins/{symbol}/candles`, CryptoCompare's history is asked for by symbol, and ids
//! differ between price providers (CoinMarketCap's numbers, CoinGecko's slugs), so a switch
//! of provider keeps a coin's history. Where one snapshot has several coins of a symbol,
//! the one [`PriceSnapshot::by_symbol`](topcoins_schemas::PriceSnapshot::by_symbol) names is
//! recorded (largest market cap), as the API does.
//!
//! **Idempotence:** a candle is the join of the samples applied to it ([`Candle::merge`]:
//! open of the earliest, close of the latest, extremes between, ties broken by value), so a
//! row depends only on the *set* of samples that reached it. Replaying a snapshot, once or
//! many times, in or out of order with later ones, leaves every row as it was.
//!
//! Layout:
//! - [`interval`]: [`Interval`], its names and bucket arithmetic, default retention.
//! - [`candle`]: [`Sample`], [`Candle`] and the merge, the reference for the SQL.
//! - [`batch`]: snapshots to samples to a [`Batch`] of `1m` candles with unique keys.
//! - [`rollup`]: the coarser intervals from `1m`: the mark, the overlay reads merge in.
//! - [`progress`]: [`BackfillProgress`], what the backfill fetched per coin and interval.
//! - [`store`]: the [`CandleStore`] trait, [`Range`] queries with keyset [`Cursor`]s,
//!   [`Retention`], and [`Store`], the backend a [`DatabaseUrl`] names.
//! - `sql`: the merge rule as SQL, shared by both backends, and the row shape.
//! - [`sqlite`]: [`SqliteStore`], the embedded default; migrations in `migrations/sqlite/`.
//! - [`postgres`]: [`PostgresStore`]; migrations in `migrations/postgresql/`.
//! - [`alerts`]: [`AlertStore`]: alert rules, channels, state, alerts and the outbox.
//! - [`migrate`]: the versioned migration lists, embedded in the binary.
//! - [`url`]: [`DatabaseUrl`], the parser of `TOPCOINS_DATABASE_URL`.
//! - [`error`]: [`Error`], the crate's one error type.
//!
//! The behavioural suite both backends pass is `tests/suite/`.

pub mod accounts;
pub mod alerts;
pub mod batch;
pub mod candle;
pub mod error;
pub mod interval;
pub mod migrate;
pub mod postgres;
pub mod progress;
pub mod rollup;
mod sql;
pub mod sqlite;
pub mod store;
pub mod url;

pub use accounts::{
    AccountStore, ApiKey, Record, RecordPage, RecordRange, RecordStore, User, Watch,
};
pub use alerts::{
    Alert, AlertPage, AlertState, AlertStore, Attempt, Channel, Decision, Message, Next, Rotation,
    Rule,
};
pub use batch::{Batch, symbol_key};
pub use candle::{Candle, Observation, Ohlc, Ranked, Sample, Source};
pub use error::Error;
pub use interval::Interval;
pub use postgres::PostgresStore;
pub use progress::BackfillProgress;
pub use rollup::Rolled;
pub use sqlite::SqliteStore;
pub use store::{CandleStore, Cursor, MAX_LIMIT, PRUNE_STEP, Page, Range, Retention, Store};
pub use url::{DatabaseUrl, PostgresUrl};
