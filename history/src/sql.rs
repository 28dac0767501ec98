//! SQL both backends share: the merge rule as an `ON CONFLICT … DO UPDATE SET`, the columns,
//! and the row they read back. Only the parts with placeholders differ per backend.
//!
//! The `SET` clause is [`Candle::merge`] in SQL, written with `CASE` and row-value
//! comparisons, which SQLite and PostgreSQL read alike (no `max`/`GREATEST`, which they
//! spell and treat `NULL` differently). Every expression sees the row as it was before the
//! update, in both databases.

use compact_str::CompactString;

use crate::{Candle, Error, Interval, Ohlc, Ranked, Source};

/// The columns, in the order rows are written and read.
macro_rules! columns {
    () => {
        "symbol, span, bucket_ms, source, open_ms, open, high, low, close_ms, close, market_cap, \
         rank_ms, rank, volume_24h, volume_from, volume_to"
    };
}
pub(crate) use columns;

/// Every coin symbol in `candles`, as the CTE `coins(symbol)`: a loose index scan over the
/// primary key (one seek per coin, a NULL row last), which both backends plan the same way.
/// The latest and closed-by queries of both backends start with it.
macro_rules! every_coin {
    () => {
        "WITH RECURSIVE coins(symbol) AS (
           SELECT min(symbol) FROM candles
           UNION ALL
           SELECT (SELECT min(c.symbol) FROM candles c WHERE c.symbol > coins.symbol)
           FROM coins WHERE coins.symbol IS NOT NULL) "
    };
}
pub(crate) use every_coin;

/// A recorded candle (`excluded`) merged into the stored row (`candles`). A stored row that
/// is backfilled (`source <> 0`) is replaced whole: recorded wins its bucket.
macro_rules! merge_recorded {
    () => {
        concat!(
            " ON CONFLICT (symbol, span, bucket_ms) DO UPDATE SET",
            $crate::sql::merge_set!()
        )
    };
}
pub(crate) use merge_recorded;

/// The assignments of [`merge_recorded`]: also the `SET` of an `UPDATE` that names the
/// stored row `candles` and the recorded one `excluded` (PostgreSQL's update of the open
/// minute).
macro_rules! merge_set {
    () => {
        "
          source = 0,
          open_ms = CASE WHEN candles.source <> 0 OR candles.open IS NULL OR (excluded.open IS NOT NULL AND (excluded.open_ms, excluded.open) < (candles.open_ms, candles.open)) THEN excluded.open_ms ELSE candles.open_ms END,
          open = CASE WHEN candles.source <> 0 OR candles.open IS NULL OR (excluded.open IS NOT NULL AND (excluded.open_ms, excluded.open) < (candles.open_ms, candles.open)) THEN excluded.open ELSE candles.open END,
          high = CASE WHEN candles.source <> 0 OR candles.high IS NULL OR excluded.high > candles.high THEN excluded.high ELSE candles.high END,
          low = CASE WHEN candles.source <> 0 OR candles.low IS NULL OR excluded.low < candles.low THEN excluded.low ELSE candles.low END,
          close_ms = CASE WHEN candles.source <> 0 OR candles.close IS NULL OR (excluded.close IS NOT NULL AND (excluded.close_ms, excluded.close, coalesce(excluded.market_cap, -1.0)) > (candles.close_ms, candles.close, coalesce(candles.market_cap, -1.0))) THEN excluded.close_ms ELSE candles.close_ms END,
          close = CASE WHEN candles.source <> 0 OR candles.close IS NULL OR (excluded.close IS NOT NULL AND (excluded.close_ms, excluded.close, coalesce(excluded.market_cap, -1.0)) > (candles.close_ms, candles.close, coalesce(candles.market_cap, -1.0))) THEN excluded.close ELSE candles.close END,
          market_cap = CASE WHEN candles.source <> 0 OR candles.close IS NULL OR (excluded.close IS NOT NULL AND (excluded.close_ms, excluded.close, coalesce(excluded.market_cap, -1.0)) > (candles.close_ms, candles.close, coalesce(candles.market_cap, -1.0))) THEN excluded.market_cap ELSE candles.market_cap END,
          rank_ms = CASE WHEN candles.source <> 0 OR candles.rank_ms IS NULL OR (excluded.rank_ms IS NOT NULL AND (excluded.rank_ms, excluded.rank, coalesce(excluded.volume_24h, -1.0)) > (candles.rank_ms, candles.rank, coalesce(candles.volume_24h, -1.0))) THEN excluded.rank_ms ELSE candles.rank_ms END,
          rank = CASE WHEN candles.source <> 0 OR candles.rank_ms IS NULL OR (excluded.rank_ms IS NOT NULL AND (excluded.rank_ms, excluded.rank, coalesce(excluded.volume_24h, -1.0)) > (candles.rank_ms, candles.rank, coalesce(candles.volume_24h, -1.0))) THEN excluded.rank ELSE candles.rank END,
          volume_24h = CASE WHEN candles.source <> 0 OR candles.rank_ms IS NULL OR (excluded.rank_ms IS NOT NULL AND (excluded.rank_ms, excluded.rank, coalesce(excluded.volume_24h, -1.0)) > (candles.rank_ms, candles.rank, coalesce(candles.volume_24h, -1.0))) THEN excluded.volume_24h ELSE candles.volume_24h END,
          volume_from = NULL,
          volume_to = NULL"
    };
}
pub(crate) use merge_set;

/// A backfilled candle replaces a backfilled row and leaves a recorded one alone.
macro_rules! replace_backfilled {
    () => {
        " ON CONFLICT (symbol, span, bucket_ms) DO UPDATE SET
          source = excluded.source, open_ms = excluded.open_ms, open = excluded.open,
          high = excluded.high, low = excluded.low, close_ms = excluded.close_ms,
          close = excluded.close, market_cap = excluded.market_cap, rank_ms = excluded.rank_ms,
          rank = excluded.rank, volume_24h = excluded.volume_24h,
          volume_from = excluded.volume_from, volume_to = excluded.volume_to
          WHERE candles.source <> 0"
    };
}
pub(crate) use replace_backfilled;

/// A candle as columns, the shape both drivers bind and read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub symbol: CompactString,
    pub span: &'static str,
    pub bucket_ms: i64,
    pub source: i16,
    pub open_ms: Option<i64>,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close_ms: Option<i64>,
    pub close: Option<f64>,
    pub market_cap: Option<f64>,
    pub rank_ms: Option<i64>,
    pub rank: Option<i32>,
    pub volume_24h: Option<f64>,
    pub volume_from: Option<f64>,
    pub volume_to: Option<f64>,
}

impl From<&Candle> for Row {
    fn from(c: &Candle) -> Self {
        let p = c.price.as_ref();
        let r = c.ranked.as_ref();
        Row {
            symbol: c.symbol.clone(),
            span: c.interval.as_str(),
            bucket_ms: c.time,
            source: c.source.code(),
            open_ms: p.map(|p| p.open_time),
            open: p.map(|p| p.open),
            high: p.map(|p| p.high),
            low: p.map(|p| p.low),
            close_ms: p.map(|p| p.close_time),
            close: p.map(|p| p.close),
            market_cap: p.and_then(|p| p.market_cap_usd),
            rank_ms: r.map(|r| r.time),
            rank: r.map(|r| i32::try_from(r.rank).unwrap_or(i32::MAX)),
            volume_24h: r.and_then(|r| r.volume_24h_usd),
            volume_from: c.volume_from,
            volume_to: c.volume_to,
        }
    }
}

impl Row {
    pub(crate) fn into_candle(self) -> Result<Candle, Error> {
        let interval: Interval = self.span.parse()?;
        let price = match (
            self.open_ms,
            self.open,
            self.high,
            self.low,
            self.close_ms,
            self.close,
        ) {
            (Some(open_time), Some(open), Some(high), Some(low), Some(close_time), Some(close)) => {
                Some(Ohlc {
                    open_time,
                    open,
                    high,
                    low,
                    close_time,
                    close,
                    market_cap_usd: self.market_cap,
                })
            }
            (None, None, None, None, None, None) => None,
            _ => return Err(self.corrupt("a partial price")),
        };
        let ranked = match (self.rank_ms, self.rank) {
            (Some(time), Some(rank)) => Some(Ranked {
                time,
                rank: u32::try_from(rank).map_err(|_| self.corrupt("a negative rank"))?,
                volume_24h_usd: self.volume_24h,
            }),
            (None, None) => None,
            _ => return Err(self.corrupt("a partial rank")),
        };
        Ok(Candle {
            interval,
            time: self.bucket_ms,
            source: Source::from_code(self.source)?,
            price,
            ranked,
            volume_from: self.volume_from,
            volume_to: self.volume_to,
            symbol: self.symbol,
        })
    }

    fn corrupt(&self, what: &str) -> Error {
        Error::Corrupt(format!(
            "{} {} at {} has {what}",
            self.symbol, self.span, self.bucket_ms
        ))
    }
}
