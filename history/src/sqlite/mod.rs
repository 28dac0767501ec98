//! The SQLite backend, the embedded default: one file, WAL, a writer thread and a reader
//! thread (see [`worker`]), every batch one `BEGIN IMMEDIATE` transaction through a cached
//! prepared statement. The minutes the roll-up has not reached are kept in a table of their
//! own, clustered by time (`minutes`, migration 0004): a snapshot that opens a new minute
//! appends there instead of touching one page per coin of `candles`. Durability: `synchronous = FULL`, so a batch whose `apply` returned is
//! on disk before the recorder acknowledges its snapshot.

mod accounts;
mod alerts;
mod worker;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::migrate::{self, Migration};
use crate::rollup::{self, COARSE, roll_up};
use crate::sql::{Row, columns, every_coin, merge_recorded, replace_backfilled};
use crate::store::{PRUNE_STEP, check_backfilled, pick_closes};
use crate::{BackfillProgress, Batch, Candle, CandleStore, Error, Interval, Page, Range, Rolled};
use worker::Worker;

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Symbols one prune step visits at most, so that a step's lock stays short even where
/// nothing is to be deleted.
const PRUNE_SYMBOLS_PER_STEP: usize = 500;

/// Where a row goes: `candles` (the coarser intervals, and the minutes before the roll-up's
/// mark) or `minutes` (the minutes from the mark on). Both have the same columns; the
/// statements name the row `candles` either way (`INSERT INTO minutes AS candles`), so the
/// merge reads alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Candles,
    Minutes,
}

impl Table {
    /// The table a row of `interval` at `time` goes to, given the mark.
    fn of(interval: Interval, time: i64, through: i64) -> Table {
        if rollup::is_unrolled_minute(interval, time, through) {
            Table::Minutes
        } else {
            Table::Candles
        }
    }

    fn insert_into(self) -> &'static str {
        match self {
            Table::Candles => "INSERT INTO candles (",
            Table::Minutes => "INSERT INTO minutes AS candles (",
        }
    }

    fn insert_recorded(self) -> &'static str {
        match self {
            Table::Candles => &INSERT_RECORDED[0],
            Table::Minutes => &INSERT_RECORDED[1],
        }
    }

    fn insert_recorded_many(self) -> &'static str {
        match self {
            Table::Candles => &INSERT_RECORDED_MANY[0],
            Table::Minutes => &INSERT_RECORDED_MANY[1],
        }
    }

    fn insert_backfilled(self) -> &'static str {
        match self {
            Table::Candles => &INSERT_BACKFILLED[0],
            Table::Minutes => &INSERT_BACKFILLED[1],
        }
    }
}

/// One recorded row through the merge, per [`Table`].
static INSERT_RECORDED: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [Table::Candles, Table::Minutes].map(|t| {
        format!(
            "{}{}) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL, NULL){}",
            t.insert_into(),
            columns!(),
            merge_recorded!()
        )
    })
});

/// Rows one statement of [`INSERT_RECORDED_MANY`] writes: a batch is written in statements
/// of this many rows (fewer round trips through the statement machinery than one per row;
/// 50 × 13 parameters, well under SQLite's limit), the rest one by one.
const ROWS_PER_INSERT: usize = 50;
/// Parameters of one recorded row.
const RECORDED_PARAMS: usize = 13;

/// [`INSERT_RECORDED`] for [`ROWS_PER_INSERT`] rows at once.
static INSERT_RECORDED_MANY: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    let row = "(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)";
    let rows = vec![row; ROWS_PER_INSERT].join(", ");
    [Table::Candles, Table::Minutes].map(|t| {
        format!(
            "{}{}) VALUES {rows}{}",
            t.insert_into(),
            columns!(),
            merge_recorded!()
        )
    })
});

/// The parameters of one recorded row, in [`INSERT_RECORDED`]'s order.
fn recorded_params<'a>(
    r: &'a Row,
    symbol: &'a &'a str,
) -> [&'a dyn rusqlite::ToSql; RECORDED_PARAMS] {
    [
        symbol,
        &r.span,
        &r.bucket_ms,
        &r.open_ms,
        &r.open,
        &r.high,
        &r.low,
        &r.close_ms,
        &r.close,
        &r.market_cap,
        &r.rank_ms,
        &r.rank,
        &r.volume_24h,
    ]
}

/// One backfilled row, per [`Table`].
static INSERT_BACKFILLED: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [Table::Candles, Table::Minutes].map(|t| {
        format!(
            "{}{}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16){}",
            t.insert_into(),
            columns!(),
            replace_backfilled!()
        )
    })
});

/// The roll-up moves the minutes of `?1..?2` into `candles`: the recorded ones through the
/// merge, the backfilled ones through the replace (`candles` holds no minute from the mark on,
/// so neither meets a row there unless a bug put one: then the merge keeps both right). In
/// `candles`' key order, for locality.
const MOVE_RECORDED: &str = concat!(
    "INSERT INTO candles (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= ?1 AND bucket_ms < ?2 AND source = 0
      ORDER BY symbol, bucket_ms",
    merge_recorded!()
);

const MOVE_BACKFILLED: &str = concat!(
    "INSERT INTO candles (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= ?1 AND bucket_ms < ?2 AND source <> 0
      ORDER BY symbol, bucket_ms",
    replace_backfilled!()
);

const DELETE_MOVED: &str = "DELETE FROM minutes WHERE bucket_ms < ?1";

/// The minutes in `?1..?2` from the `minutes` table (all of them from the mark on), every
/// coin's, in time order: a range scan of its primary key.
const SELECT_HOT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= ?1 AND bucket_ms < ?2"
);

/// The first minute at or after `?1` in `minutes`, `NULL` if none: where a roll-up that
/// starts far behind its data (a new database's mark is 0) jumps to.
const SELECT_FIRST_HOT: &str = "SELECT min(bucket_ms) FROM minutes WHERE bucket_ms >= ?1";

/// The `probe(t)` CTE: one row per minute from `?6` (the bucket of the range's lower bound
/// `?3`) or the first minute in `minutes`, whichever is later, up to `$upper` or the newest minute in `minutes`,
/// whichever is earlier. `minutes` is clustered by time, so a coin's rows there are found by
/// one primary-key probe per minute; it holds only the minutes from the mark on (a few, while
/// the roll-up keeps up), so the probes are few.
macro_rules! probe_minutes {
    ($upper:literal) => {
        concat!(
            "WITH RECURSIVE probe(t) AS (
               SELECT max(?6, (SELECT coalesce(min(bucket_ms), 0) FROM minutes))
               UNION ALL
               SELECT t + 60000 FROM probe
               WHERE t + 60000 < min(",
            $upper,
            ", (SELECT coalesce(max(bucket_ms) + 1, 0) FROM minutes))) "
        )
    };
}

/// The `minutes` arm of a range read: the coin's (`?1`) rows in `?3..$upper`, by the probes.
macro_rules! hot_arm {
    ($upper:literal) => {
        concat!(
            "SELECT m.symbol, m.span, m.bucket_ms, m.source, m.open_ms, m.open, m.high, m.low,
               m.close_ms, m.close, m.market_cap, m.rank_ms, m.rank, m.volume_24h,
               m.volume_from, m.volume_to
             FROM probe JOIN minutes m
               ON m.bucket_ms = probe.t AND m.symbol = ?1 AND m.span = '1m'
             WHERE m.bucket_ms >= ?3 AND m.bucket_ms < ",
            $upper
        )
    };
}

/// A range of `1m` that reaches the mark: the priced rows of `candles` before it, and the
/// priced rows of `minutes` (each arm with the page's limit; the caller orders and cuts).
const SELECT_RANGE_MINUTES: &str = concat!(
    probe_minutes!("?4"),
    "SELECT * FROM (SELECT ",
    columns!(),
    " FROM candles WHERE symbol = ?1 AND span = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4
      AND bucket_ms < (SELECT through_ms FROM rollup WHERE id = 1)
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT ?5)
     UNION ALL SELECT * FROM (",
    hot_arm!("?4"),
    " AND m.open IS NOT NULL ORDER BY m.bucket_ms LIMIT ?5)"
);

const SELECT_RANGE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM candles WHERE symbol = ?1 AND span = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT ?5"
);

/// Every symbol by a skip scan of the primary key (one seek per coin), then each one's
/// latest priced row by a backward seek.
const SELECT_LATEST: &str = concat!(
    every_coin!(),
    "SELECT ",
    columns!(),
    " FROM coins JOIN candles USING (symbol)
     WHERE candles.span = ?1 AND candles.bucket_ms = (
       SELECT l.bucket_ms FROM candles l WHERE l.symbol = coins.symbol AND l.span = ?1
       AND l.open IS NOT NULL ORDER BY l.bucket_ms DESC LIMIT 1)
     ORDER BY symbol"
);

/// Every coin's latest priced candle of one interval (`?1`) whose closing sample came at or
/// before `?2`: the plan of the latest query, each coin's backward seek bounded by the time.
/// Only the bucket holding the time can have closed after it, so the seek skips one row at
/// most.
const SELECT_CLOSED_BY: &str = concat!(
    every_coin!(),
    "SELECT ",
    columns!(),
    " FROM coins JOIN candles USING (symbol)
     WHERE candles.span = ?1 AND candles.bucket_ms = (
       SELECT l.bucket_ms FROM candles l WHERE l.symbol = coins.symbol AND l.span = ?1
       AND l.bucket_ms <= ?2 AND l.bucket_ms < ?3 AND l.open IS NOT NULL
       AND l.close_ms <= ?2
       ORDER BY l.bucket_ms DESC LIMIT 1)
     ORDER BY symbol"
);

/// The roll-up's mark (see [`crate::rollup`]).
const SELECT_THROUGH: &str = "SELECT through_ms FROM rollup WHERE id = 1";

const UPDATE_THROUGH: &str = "UPDATE rollup SET through_ms = ?1 WHERE id = 1";

/// A range of a coarser interval and what the overlay merges into it, in one statement (one
/// snapshot of the file): the priced rows before the mark's bucket (complete: nothing to
/// merge) with the page's limit, every row from the mark's bucket on (few: the overlay may
/// price an unpriced one or replace a backfilled one), and the `1m` rows from the mark on
/// (from the `minutes` table by the probes of [`probe_minutes`]; `?6`: the minute of `?3`,
/// `?7`: the end of the minutes the range needs, `?8`: the interval's length).
const SELECT_RANGE_ROLLED: &str = concat!(
    probe_minutes!("?7"),
    "SELECT * FROM (SELECT ",
    columns!(),
    " FROM candles WHERE symbol = ?1 AND span = ?2 AND bucket_ms >= ?3 AND bucket_ms < ?4
      AND bucket_ms < (SELECT through_ms - through_ms % ?8 FROM rollup WHERE id = 1)
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT ?5)
     UNION ALL SELECT ",
    columns!(),
    " FROM candles WHERE symbol = ?1 AND span = ?2
      AND bucket_ms >= max(?3, (SELECT through_ms - through_ms % ?8 FROM rollup WHERE id = 1))
      AND bucket_ms < ?4
     UNION ALL ",
    hot_arm!("?7")
);

/// Every coin's rows of one interval (`?1`) from a bucket (`?2`) on, priced or not.
const SELECT_RECENT: &str = concat!(
    every_coin!(),
    "SELECT ",
    columns!(),
    " FROM coins JOIN candles USING (symbol)
     WHERE candles.span = ?1 AND candles.bucket_ms >= ?2"
);

const NEXT_SYMBOL: &str = "SELECT min(symbol) FROM candles WHERE symbol > ?1";

const DELETE_EXPIRED: &str =
    "DELETE FROM candles WHERE symbol = ?1 AND span = ?2 AND bucket_ms IN (
    SELECT bucket_ms FROM candles WHERE symbol = ?1 AND span = ?2 AND bucket_ms < ?3
    ORDER BY bucket_ms LIMIT ?4)";

const SELECT_PROGRESS: &str =
    "SELECT symbol, span, oldest_ms, newest_ms, complete, fetched_ms FROM backfills
     ORDER BY symbol, span";

const UPSERT_PROGRESS: &str =
    "INSERT INTO backfills (symbol, span, oldest_ms, newest_ms, complete, fetched_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (symbol, span) DO UPDATE SET oldest_ms = excluded.oldest_ms,
       newest_ms = excluded.newest_ms, complete = excluded.complete,
       fetched_ms = excluded.fetched_ms";

/// Candles in one SQLite file.
pub struct SqliteStore {
    writer: Worker,
    reader: Worker,
    mark: std::sync::Arc<rollup::KnownMark>,
}

impl SqliteStore {
    /// Opens (creating) the file. Call [`CandleStore::migrate`] before anything else.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let writer = Connection::open(&path)?;
            writer.busy_timeout(BUSY_TIMEOUT)?;
            // WAL is a property of the file: set once here, the reader opened after sees it.
            let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Database(format!("journal_mode is {mode}, not wal")));
            }
            writer.pragma_update(None, "synchronous", "FULL")?;
            writer.set_prepared_statement_cache_capacity(32);
            let reader = Connection::open(&path)?;
            reader.busy_timeout(BUSY_TIMEOUT)?;
            reader.pragma_update(None, "query_only", "ON")?;
            Ok(SqliteStore {
                writer: Worker::spawn("sqlite-writer", writer)?,
                reader: Worker::spawn("sqlite-reader", reader)?,
                mark: Default::default(),
            })
        })
        .await
        .map_err(|e| Error::Unavailable(format!("sqlite open task: {e}")))?
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn migrate(conn: &mut Connection, list: &'static [Migration]) -> Result<(), Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT",
    )?;
    // One step per transaction, the version read inside it: a second process migrating the
    // same file at the same time waits for the lock and then finds the step done.
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        if current > migrate::latest(list) {
            return Err(Error::SchemaTooNew {
                found: current,
                known: migrate::latest(list),
            });
        }
        let Some(step) = list.iter().find(|m| m.version == current + 1) else {
            return Ok(());
        };
        let failed = |e: rusqlite::Error| Error::Migration {
            version: step.version,
            name: step.name,
            reason: e.to_string(),
        };
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            params![step.version, step.name, now_ms()],
        )
        .map_err(failed)?;
        tx.commit()?;
        tracing::info!(
            version = step.version,
            name = step.name,
            "sqlite migration applied"
        );
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> Result<Row, Error> {
    let span: String = r.get(1)?;
    let interval: Interval = span.parse()?;
    Ok(Row {
        symbol: CompactString::from(r.get::<_, String>(0)?),
        span: interval.as_str(),
        bucket_ms: r.get(2)?,
        source: r.get(3)?,
        open_ms: r.get(4)?,
        open: r.get(5)?,
        high: r.get(6)?,
        low: r.get(7)?,
        close_ms: r.get(8)?,
        close: r.get(9)?,
        market_cap: r.get(10)?,
        rank_ms: r.get(11)?,
        rank: r.get(12)?,
        volume_24h: r.get(13)?,
        volume_from: r.get(14)?,
        volume_to: r.get(15)?,
    })
}

fn read_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Candle>, Error> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_row(r)?.into_candle()?);
    }
    Ok(out)
}

/// Writes recorded candles (unique, in the table's key order for locality) into `table`
/// through the merge, [`ROWS_PER_INSERT`] rows a statement and the rest one by one.
fn write_recorded(
    tx: &rusqlite::Transaction<'_>,
    table: Table,
    candles: &[Candle],
) -> Result<(), Error> {
    let mut chunks = candles.chunks_exact(ROWS_PER_INSERT);
    if candles.len() >= ROWS_PER_INSERT {
        let mut insert = tx.prepare_cached(table.insert_recorded_many())?;
        let mut rows: Vec<Row> = Vec::with_capacity(ROWS_PER_INSERT);
        for chunk in chunks.by_ref() {
            rows.clear();
            rows.extend(chunk.iter().map(Row::from));
            let symbols: Vec<&str> = rows.iter().map(|r| r.symbol.as_str()).collect();
            let mut values: Vec<&dyn rusqlite::ToSql> =
                Vec::with_capacity(ROWS_PER_INSERT * RECORDED_PARAMS);
            for (r, symbol) in rows.iter().zip(&symbols) {
                values.extend(recorded_params(r, symbol));
            }
            insert.execute(values.as_slice())?;
        }
    }
    let mut insert = tx.prepare_cached(table.insert_recorded())?;
    for c in chunks.remainder() {
        let r = Row::from(c);
        let symbol = r.symbol.as_str();
        insert.execute(recorded_params(&r, &symbol).as_slice())?;
    }
    Ok(())
}

/// Every row of the `minutes` table in `from..to`.
fn hot_minutes(conn: &Connection, from: i64, to: i64) -> Result<Vec<Candle>, Error> {
    read_rows(&mut conn.prepare_cached(SELECT_HOT)?, params![from, to])
}

/// The roll-up's mark.
fn through(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached(SELECT_THROUGH)?
        .query_row([], |r| r.get(0))?)
}

/// One prune step: deletes up to [`PRUNE_STEP`] rows, symbol after symbol from the first
/// one after `after`, in one short transaction. Returns what it deleted and where the next
/// step starts (`None`: the sweep is done).
fn prune_step(
    conn: &mut Connection,
    span: &'static str,
    before: i64,
    mut after: String,
) -> Result<(u64, Option<String>), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Minutes not rolled up yet are the only record of their samples in the coarser
    // intervals: kept whatever the retention says.
    let before = if span == Interval::M1.as_str() {
        before.min(through(&tx)?)
    } else {
        before
    };
    let mut deleted = 0usize;
    let next_step = {
        let mut next = tx.prepare_cached(NEXT_SYMBOL)?;
        let mut delete = tx.prepare_cached(DELETE_EXPIRED)?;
        let mut next_step = Some(after.clone());
        for _ in 0..PRUNE_SYMBOLS_PER_STEP {
            let symbol: Option<String> = next.query_row([&after], |r| r.get(0))?;
            let Some(symbol) = symbol else {
                next_step = None;
                break;
            };
            let room = PRUNE_STEP - deleted;
            let n = delete.execute(params![symbol, span, before, room as i64])?;
            deleted += n;
            if n == room {
                // Perhaps more of this symbol: the next step starts with it again.
                next_step = Some(after);
                break;
            }
            after = symbol;
            next_step = Some(after.clone());
        }
        next_step
    };
    tx.commit()?;
    Ok((deleted as u64, next_step))
}

impl CandleStore for SqliteStore {
    async fn migrate(&self) -> Result<(), Error> {
        self.writer
            .call(|conn| migrate(conn, migrate::SQLITE))
            .await
    }

    async fn apply(&self, batch: Batch) -> Result<(), Error> {
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mark = through(&tx)?;
                let (hot, rest) = rollup::split_minutes(batch.to_write(mark), mark);
                write_recorded(&tx, Table::Minutes, &hot)?;
                write_recorded(&tx, Table::Candles, &rest)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn rollup(&self, until: i64) -> Result<Rolled, Error> {
        // Marks are Unix ms ≥ 0 (the table's check): nothing before 1970 is rolled up.
        let until = Interval::M1.bucket_start(until.max(0));
        let mut done = Rolled::default();
        loop {
            // One step a job: batches sent meanwhile are written between steps.
            let step = self
                .writer
                .call(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let from = through(&tx)?;
                    if until <= from {
                        return Ok(Rolled {
                            through: from,
                            ..Rolled::default()
                        });
                    }
                    // From the first minute there is: no empty steps across the years.
                    let first: Option<i64> = tx
                        .prepare_cached(SELECT_FIRST_HOT)?
                        .query_row([from], |r| r.get(0))?;
                    let start = first.unwrap_or(until).clamp(from, until);
                    let to = until.min(start.saturating_add(rollup::STEP_MS));
                    let minutes = hot_minutes(&tx, from, to)?;
                    let rows = roll_up(&minutes, &COARSE);
                    write_recorded(&tx, Table::Candles, &rows)?;
                    // The minutes rolled up leave `minutes` for `candles` as the mark passes.
                    tx.prepare_cached(MOVE_RECORDED)?.execute([from, to])?;
                    tx.prepare_cached(MOVE_BACKFILLED)?.execute([from, to])?;
                    tx.prepare_cached(DELETE_MOVED)?.execute([to])?;
                    tx.prepare_cached(UPDATE_THROUGH)?.execute([to])?;
                    tx.commit()?;
                    Ok(Rolled {
                        minutes: minutes.len() as u64,
                        rows: rows.len() as u64,
                        through: to,
                    })
                })
                .await?;
            done.minutes += step.minutes;
            done.rows += step.rows;
            done.through = step.through;
            if step.through >= until {
                return Ok(done);
            }
        }
    }

    async fn upsert_backfilled(&self, candles: Vec<Candle>) -> Result<(), Error> {
        check_backfilled(&candles)?;
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mark = through(&tx)?;
                {
                    for c in &candles {
                        let table = Table::of(c.interval, c.time, mark);
                        let mut insert = tx.prepare_cached(table.insert_backfilled())?;
                        let r = Row::from(c);
                        insert.execute(params![
                            crate::symbol_key(&r.symbol).as_str(),
                            r.span,
                            r.bucket_ms,
                            r.source,
                            r.open_ms,
                            r.open,
                            r.high,
                            r.low,
                            r.close_ms,
                            r.close,
                            r.market_cap,
                            r.rank_ms,
                            r.rank,
                            r.volume_24h,
                            r.volume_from,
                            r.volume_to,
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn range(&self, range: &Range) -> Result<Page, Error> {
        let (symbol, lower, upper, limit) = range.bounds()?;
        let interval = range.interval;
        let span = interval.as_str();
        let known = self.mark.clone();
        let rows = self
            .reader
            .call(move |conn| {
                // A range complete before the mark's bucket: the plain query.
                if known.covers(interval, upper) {
                    let mut stmt = conn.prepare_cached(SELECT_RANGE)?;
                    return read_rows(
                        &mut stmt,
                        params![symbol.as_str(), span, lower, upper, limit],
                    );
                }
                // The first probe of `minutes` (which holds no minute before 1970).
                let probe_from = Interval::M1.bucket_start(lower.max(0));
                if interval == Interval::M1 {
                    let mut stmt = conn.prepare_cached(SELECT_RANGE_MINUTES)?;
                    let mut rows = read_rows(
                        &mut stmt,
                        params![symbol.as_str(), span, lower, upper, limit, probe_from],
                    )?;
                    known.saw(through(conn)?);
                    rows.sort_by_key(|c| c.time);
                    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    return Ok(rows);
                }
                let mut stmt = conn.prepare_cached(SELECT_RANGE_ROLLED)?;
                let (minutes, stored): (Vec<Candle>, Vec<Candle>) = read_rows(
                    &mut stmt,
                    params![
                        symbol.as_str(),
                        span,
                        lower,
                        upper,
                        limit,
                        probe_from,
                        rollup::minutes_upper(interval, upper),
                        interval.millis(),
                    ],
                )?
                .into_iter()
                .partition(|c| c.interval == Interval::M1);
                known.saw(through(conn)?);
                Ok(rollup::range_rows(
                    stored, &minutes, interval, lower, upper, limit,
                ))
            })
            .await?;
        Ok(Page::from_rows(rows, limit))
    }

    async fn latest(&self, interval: Interval) -> Result<Vec<Candle>, Error> {
        let span = interval.as_str();
        self.reader
            .call(move |conn| {
                // One read transaction: the mark and the rows are of one snapshot.
                let tx = conn.transaction()?;
                let mark = through(&tx)?;
                let minutes = hot_minutes(&tx, mark, i64::MAX)?;
                if interval == Interval::M1 {
                    // `candles`' minutes are all before `minutes`' ones.
                    let stored = read_rows(&mut tx.prepare_cached(SELECT_LATEST)?, params![span]);
                    return Ok(rollup::latest_rows(stored?, minutes, &[], interval));
                }
                let latest = read_rows(
                    &mut tx.prepare_cached(SELECT_CLOSED_BY)?,
                    params![span, i64::MAX, rollup::open_from(interval, mark)],
                )?;
                let recent = read_rows(
                    &mut tx.prepare_cached(SELECT_RECENT)?,
                    params![span, rollup::open_from(interval, mark)],
                )?;
                Ok(rollup::latest_rows(latest, recent, &minutes, interval))
            })
            .await
    }

    async fn prune(&self, interval: Interval, before: i64) -> Result<u64, Error> {
        let span = interval.as_str();
        let mut total = 0;
        let mut after = Some(String::new());
        // Each step is its own job: batches sent meanwhile are written between steps.
        while let Some(from) = after {
            let (n, next) = self
                .writer
                .call(move |conn| prune_step(conn, span, before, from))
                .await?;
            total += n;
            after = next;
        }
        Ok(total)
    }
    async fn backfill_progress(&self) -> Result<Vec<BackfillProgress>, Error> {
        self.reader
            .call(|conn| {
                let mut stmt = conn.prepare_cached(SELECT_PROGRESS)?;
                let mut rows = stmt.query([])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let span: String = r.get(1)?;
                    out.push(BackfillProgress {
                        symbol: CompactString::from(r.get::<_, String>(0)?),
                        interval: span.parse()?,
                        oldest: r.get(2)?,
                        newest: r.get(3)?,
                        complete: r.get::<_, i64>(4)? != 0,
                        fetched_at: r.get(5)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn record_backfill_progress(&self, p: BackfillProgress) -> Result<(), Error> {
        self.writer
            .call(move |conn| {
                conn.prepare_cached(UPSERT_PROGRESS)?.execute(params![
                    crate::symbol_key(&p.symbol).as_str(),
                    p.interval.as_str(),
                    p.oldest,
                    p.newest,
                    i64::from(p.complete),
                    p.fetched_at,
                ])?;
                Ok(())
            })
            .await
    }

    async fn closes_at(&self, at: i64) -> Result<Vec<Candle>, Error> {
        let candidates = self
            .reader
            .call(move |conn| {
                let tx = conn.transaction()?;
                let mark = through(&tx)?;
                let stored = read_rows(
                    &mut tx.prepare_cached(SELECT_CLOSED_BY)?,
                    params![Interval::M1.as_str(), at, i64::MAX],
                )?;
                // Needed by every interval whose mark's bucket starts by `at` (the daily one
                // starts first: every interval divides a day).
                let minutes = if at >= rollup::open_from(Interval::D1, mark) {
                    hot_minutes(&tx, mark, i64::MAX)?
                } else {
                    Vec::new()
                };
                let later = rollup::closes_rows(minutes.clone(), &[], Interval::M1, at);
                let mut out = rollup::prefer_later(stored, later);
                for interval in COARSE {
                    // Stored buckets before the mark's are complete; from it on, overlaid.
                    let open = rollup::open_from(interval, mark);
                    let stored = read_rows(
                        &mut tx.prepare_cached(SELECT_CLOSED_BY)?,
                        params![interval.as_str(), at, open],
                    )?;
                    if at < open {
                        out.extend(stored);
                        continue;
                    }
                    let recent = read_rows(
                        &mut tx.prepare_cached(SELECT_RECENT)?,
                        params![interval.as_str(), open],
                    )?;
                    let later = rollup::closes_rows(recent, &minutes, interval, at);
                    out.extend(rollup::prefer_later(stored, later));
                }
                Ok(out)
            })
            .await?;
        Ok(pick_closes(candidates))
    }
}
