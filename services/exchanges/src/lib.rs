//! Exchange tickers for issue 12: each exchange's public 24 h ticker body parsed into one
//! [`Ticker`] per pair, with pair names normalised to `base-quote` lower case. No I/O here —
//! the polling actor, the snapshot and the wiring come later and build on these parsers.
//!
//! - [`pair`]: [`Pair`] and each exchange's name mapping (Kraken `XXBTZUSD`, Binance
//!   `BTCUSDT`, Coinbase `BTC-USD`).
//! - [`ticker`]: [`Ticker`], [`Rejection`] and [`Parsed`], what every parser returns, and the
//!   number checks they share.
//! - [`kraken`], [`binance`], [`coinbase`]: one parser per exchange.
//!
//! Errors are [`topcoins_upstream::UpstreamError`], as for every other provider: a body that
//! breaks the overall shape is `Malformed` with its JSON path, an error body is `Provider` (or
//! `RateLimited`, `Status`). One bad pair is a [`Rejection`] beside the good ones, never an
//! error for the whole body.

pub mod binance;
pub mod coinbase;
pub mod kraken;
pub mod pair;
pub mod ticker;

pub use pair::Pair;
pub use ticker::{Parsed, Rejection, Ticker, Window};
