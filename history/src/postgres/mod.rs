//! The PostgreSQL backend, for more than one machine: a deadpool of tokio-postgres
//! connections, every batch one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT … DO UPDATE`
//! (one statement, one round trip, whatever the batch's size) — except a snapshot opening a
//! new minute, whose rows are copied in (`COPY … FORMAT binary`), and a price snapshot within
//! the open minute, whose rows are updated in place (see [`write_minutes`]) —
//! statements prepared once per connection. Connections are made without TLS (`sslmode=disable`); a TLS connector is a
//! follow-up for databases reached over an untrusted network.

mod accounts;
mod alerts;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::migrate::{self, Migration};
use crate::rollup::{self, COARSE, roll_up};
use crate::sql::{Row, columns, every_coin, merge_recorded, merge_set, replace_backfilled};
use crate::store::{PRUNE_STEP, check_backfilled, pick_closes};
use crate::url::PostgresUrl;
use crate::{BackfillProgress, Batch, Candle, CandleStore, Error, Interval, Page, Range, Rolled};

/// Connections the pool holds at most.
pub const POOL_SIZE: usize = 8;

/// How long connecting, or waiting for a free connection, may take before the database
/// counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises migrations of several processes at once (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x746f_7063_6f69_6e73; // "topcoins"

const PRUNE_SYMBOLS_PER_STEP: usize = 500;

/// The recorded rows of a batch, from one array per column, through the merge: into
/// `candles`, or with `$table` = "minutes AS candles" into `minutes` (the minutes from the
/// roll-up's mark on; the alias makes the merge read alike).
macro_rules! insert_recorded {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (",
            columns!(),
            ") SELECT s, sp, b, 0::smallint, om, o, h, l, cm, c, mc, rm, r, v, NULL::float8,
               NULL::float8
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[],
                         $6::float8[], $7::float8[], $8::bigint[], $9::float8[], $10::float8[],
                         $11::bigint[], $12::int[], $13::float8[])
               AS u(s, sp, b, om, o, h, l, cm, c, mc, rm, r, v)",
            merge_recorded!()
        )
    };
}

/// Backfilled rows, as [`insert_recorded`] with every column given.
macro_rules! insert_backfilled {
    ($table:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (",
            columns!(),
            ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::smallint[],
                 $5::bigint[], $6::float8[], $7::float8[], $8::float8[], $9::bigint[],
                 $10::float8[], $11::float8[], $12::bigint[], $13::int[], $14::float8[],
                 $15::float8[], $16::float8[])",
            replace_backfilled!()
        )
    };
}

/// A price snapshot's rows (each one price sample and no rank: open, high, low and close the
/// one price, opened and closed at its time) merged into the rows of `minutes` they meet, by
/// an `UPDATE` with the merge's `SET` from five arrays. Unpacking the thirteen arrays of
/// [`insert_recorded`] was 11–22 ms of a 64 ms update (`EXPLAIN ANALYZE`, 10,000 rows); the
/// update alone, from all thirteen, was no faster than the merge. Rows it does not meet are
/// left to the merge ([`write_minutes`]).
const UPDATE_SAMPLED_MINUTES: &str = concat!(
    "UPDATE minutes AS candles SET",
    merge_set!(),
    " FROM (SELECT s AS symbol, b AS bucket_ms, t AS open_ms, p AS open, p AS high, p AS low,
                   t AS close_ms, p AS close, mc AS market_cap, NULL::bigint AS rank_ms,
                   NULL::int AS rank, NULL::float8 AS volume_24h
            FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[])
              AS u(s, b, t, p, mc)) AS excluded
      WHERE candles.bucket_ms = excluded.bucket_ms AND candles.symbol = excluded.symbol
        AND candles.span = '1m'"
);

const INSERT_RECORDED: &str = insert_recorded!("candles");
const INSERT_RECORDED_MINUTES: &str = insert_recorded!("minutes AS candles");
const INSERT_BACKFILLED: &str = insert_backfilled!("candles");
const INSERT_BACKFILLED_MINUTES: &str = insert_backfilled!("minutes AS candles");

/// The roll-up moves the minutes of `$1..$2` into `candles`: recorded ones through the
/// merge, backfilled ones through the replace (`candles` holds no minute from the mark on,
/// so neither meets a row there unless a bug put one: then the merge keeps both right).
const MOVE_RECORDED: &str = concat!(
    "INSERT INTO candles (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= $1 AND bucket_ms < $2 AND source = 0
      ORDER BY symbol, bucket_ms",
    merge_recorded!()
);

const MOVE_BACKFILLED: &str = concat!(
    "INSERT INTO candles (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= $1 AND bucket_ms < $2 AND source <> 0
      ORDER BY symbol, bucket_ms",
    replace_backfilled!()
);

const DELETE_MOVED: &str = "DELETE FROM minutes WHERE bucket_ms < $1";

/// Every row of `minutes` in `$1..$2` (all of them from the mark on), every coin's.
const SELECT_HOT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM minutes WHERE bucket_ms >= $1 AND bucket_ms < $2"
);

/// The first minute at or after `$1` in `minutes`, `NULL` if none: where a roll-up that
/// starts far behind its data (a new database's mark is 0) jumps to.
const SELECT_FIRST_HOT: &str = "SELECT min(bucket_ms) FROM minutes WHERE bucket_ms >= $1";

/// The `minutes` arm of a range read: one coin's (`$1`) rows in `$3..$upper`, by one
/// primary-key probe per minute (a lateral join) from `$6` (the minute of `$3`) or the first minute
/// there, whichever is later, to `$upper` or the newest minute there, whichever is earlier.
/// `minutes` is clustered by time and holds only the minutes from the mark on, so the probes
/// are few.
macro_rules! hot_arm {
    ($upper:literal) => {
        concat!(
            "SELECT m.* FROM generate_series(
               GREATEST($6, (SELECT min(bucket_ms) FROM minutes)),
               LEAST(",
            $upper,
            ", (SELECT coalesce(max(bucket_ms) + 1, 0) FROM minutes)) - 1,
               60000) AS probe(t),
             LATERAL (SELECT ",
            columns!(),
            " FROM minutes WHERE bucket_ms = probe.t AND symbol = $1 AND span = '1m'
                AND bucket_ms >= $3 AND bucket_ms < ",
            $upper,
            ") m"
        )
    };
}

/// A range of `1m` that reaches the mark: the priced rows of `candles` before it and those
/// of `minutes` (each arm with the page's limit; the caller orders and cuts).
const SELECT_RANGE_MINUTES: &str = concat!(
    "(SELECT ",
    columns!(),
    " FROM candles WHERE symbol = $1 AND span = $2 AND bucket_ms >= $3 AND bucket_ms < $4
      AND bucket_ms < (SELECT through_ms FROM rollup WHERE id = 1)
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT $5)
     UNION ALL (",
    hot_arm!("$4"),
    " WHERE m.open IS NOT NULL ORDER BY m.bucket_ms LIMIT $5)"
);

const SELECT_RANGE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM candles WHERE symbol = $1 AND span = $2 AND bucket_ms >= $3 AND bucket_ms < $4
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT $5"
);

/// A loose index scan over the primary key (one seek per coin), then each coin's latest
/// priced row by a backward seek; the same plan as SQLite's.
const SELECT_LATEST: &str = concat!(
    every_coin!(),
    "SELECT ",
    columns!(),
    " FROM coins JOIN candles USING (symbol)
     WHERE candles.span = $1 AND candles.bucket_ms = (
       SELECT l.bucket_ms FROM candles l WHERE l.symbol = coins.symbol AND l.span = $1
       AND l.open IS NOT NULL ORDER BY l.bucket_ms DESC LIMIT 1)
     ORDER BY symbol"
);

/// Every coin's latest priced candle of one interval (`$1`) whose closing sample came at or
/// before `$2`: the plan of the latest query, each coin's backward seek bounded by the time.
/// Only the bucket holding the time can have closed after it, so the seek skips one row at
/// most.
const SELECT_CLOSED_BY: &str = concat!(
    every_coin!(),
    "SELECT ",
    columns!(),
    " FROM coins JOIN candles USING (symbol)
     WHERE candles.span = $1 AND candles.bucket_ms = (
       SELECT l.bucket_ms FROM candles l WHERE l.symbol = coins.symbol AND l.span = $1
       AND l.bucket_ms <= $2 AND l.bucket_ms < $3 AND l.open IS NOT NULL
       AND l.close_ms <= $2
       ORDER BY l.bucket_ms DESC LIMIT 1)
     ORDER BY symbol"
);

/// The roll-up's mark (see [`crate::rollup`]), read by a write under a shared row lock: a
/// roll-up's update of it waits for the writes that read it, and writes after it read the
/// new mark.
const SELECT_THROUGH_SHARED: &str = "SELECT through_ms FROM rollup WHERE id = 1 FOR SHARE";

const SELECT_THROUGH_FOR_UPDATE: &str = "SELECT through_ms FROM rollup WHERE id = 1 FOR UPDATE";

const SELECT_THROUGH: &str = "SELECT through_ms FROM rollup WHERE id = 1";

const UPDATE_THROUGH: &str = "UPDATE rollup SET through_ms = $1 WHERE id = 1";

/// A range of a coarser interval and what the overlay merges into it, in one statement (one
/// snapshot): the priced rows before the mark's bucket (complete) with the page's limit,
/// every row from the mark's bucket on, and the `1m` rows from the mark on (from `minutes`:
/// `$6`: the minute of `$3`, `$7`: the end of the minutes the range needs; `$8`: the
/// interval's length).
const SELECT_RANGE_ROLLED: &str = concat!(
    "(SELECT ",
    columns!(),
    " FROM candles WHERE symbol = $1 AND span = $2 AND bucket_ms >= $3 AND bucket_ms < $4
      AND bucket_ms < (SELECT through_ms - through_ms % $8 FROM rollup WHERE id = 1)
      AND open IS NOT NULL ORDER BY bucket_ms LIMIT $5)
     UNION ALL (SELECT ",
    columns!(),
    " FROM candles WHERE symbol = $1 AND span = $2
      AND bucket_ms >= GREATEST($3, (SELECT through_ms - through_ms % $8 FROM rollup WHERE id = 1))
      AND bucket_ms < $4)
     UNION ALL (",
    hot_arm!("$7"),
    ")"
);

/// Every coin's rows of one interval (`$1`) from a bucket (`$2`) on, priced or not.
const SELECT_RECENT: &str = concat!(
    every_coin!(),
    "SELECT m.* FROM coins, LATERAL (SELECT ",
    columns!(),
    " FROM candles c WHERE c.symbol = coins.symbol AND c.span = $1 AND c.bucket_ms >= $2) m"
);

const NEXT_SYMBOL: &str = "SELECT min(symbol) FROM candles WHERE symbol > $1";

const DELETE_EXPIRED: &str =
    "DELETE FROM candles WHERE symbol = $1 AND span = $2 AND bucket_ms IN (
    SELECT bucket_ms FROM candles WHERE symbol = $1 AND span = $2 AND bucket_ms < $3
    ORDER BY bucket_ms LIMIT $4)";

const SELECT_PROGRESS: &str =
    "SELECT symbol, span, oldest_ms, newest_ms, complete, fetched_ms FROM backfills
     ORDER BY symbol, span";

const UPSERT_PROGRESS: &str =
    "INSERT INTO backfills (symbol, span, oldest_ms, newest_ms, complete, fetched_ms)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (symbol, span) DO UPDATE SET oldest_ms = excluded.oldest_ms,
       newest_ms = excluded.newest_ms, complete = excluded.complete,
       fetched_ms = excluded.fetched_ms";

/// Candles in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    mark: rollup::KnownMark,
}

impl PostgresStore {
    /// A pool for `url`. Connections are made when first needed, so a database that is
    /// down now only makes the calls fail (with [`Error::Unavailable`]) until it is back.
    pub fn connect(url: &PostgresUrl) -> Result<Self, Error> {
        let mut config = url.config();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(TIMEOUT);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(TIMEOUT))
            .wait_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(PostgresStore {
            pool,
            mark: Default::default(),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        Ok(self.pool.get().await?)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn migrate(
    client: &mut tokio_postgres::Client,
    list: &'static [Migration],
) -> Result<(), Error> {
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
               version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        if current > migrate::latest(list) {
            return Err(Error::SchemaTooNew {
                found: current,
                known: migrate::latest(list),
            });
        }
        let Some(step) = list.iter().find(|m| m.version == current + 1) else {
            tx.commit().await?;
            return Ok(());
        };
        let failed = |e: tokio_postgres::Error| Error::Migration {
            version: step.version,
            name: step.name,
            reason: e.to_string(),
        };
        tx.batch_execute(step.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&step.version, &step.name, &now_ms()],
        )
        .await
        .map_err(failed)?;
        tx.commit().await?;
        tracing::info!(
            version = step.version,
            name = step.name,
            "postgresql migration applied"
        );
    }
}

fn read_row(r: &tokio_postgres::Row) -> Result<Candle, Error> {
    let span: &str = r.try_get(1)?;
    let interval: Interval = span.parse()?;
    Row {
        symbol: CompactString::from(r.try_get::<_, &str>(0)?),
        span: interval.as_str(),
        bucket_ms: r.try_get(2)?,
        source: r.try_get(3)?,
        open_ms: r.try_get(4)?,
        open: r.try_get(5)?,
        high: r.try_get(6)?,
        low: r.try_get(7)?,
        close_ms: r.try_get(8)?,
        close: r.try_get(9)?,
        market_cap: r.try_get(10)?,
        rank_ms: r.try_get(11)?,
        rank: r.try_get(12)?,
        volume_24h: r.try_get(13)?,
        volume_from: r.try_get(14)?,
        volume_to: r.try_get(15)?,
    }
    .into_candle()
}

/// The rows as one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    symbol: Vec<String>,
    span: Vec<&'static str>,
    bucket_ms: Vec<i64>,
    source: Vec<i16>,
    open_ms: Vec<Option<i64>>,
    open: Vec<Option<f64>>,
    high: Vec<Option<f64>>,
    low: Vec<Option<f64>>,
    close_ms: Vec<Option<i64>>,
    close: Vec<Option<f64>>,
    market_cap: Vec<Option<f64>>,
    rank_ms: Vec<Option<i64>>,
    rank: Vec<Option<i32>>,
    volume_24h: Vec<Option<f64>>,
    volume_from: Vec<Option<f64>>,
    volume_to: Vec<Option<f64>>,
}

impl Columns {
    fn of<'a>(candles: impl IntoIterator<Item = &'a Candle>) -> Self {
        let mut c = Columns::default();
        for candle in candles {
            let r = Row::from(candle);
            c.symbol.push(crate::symbol_key(&r.symbol).into_string());
            c.span.push(r.span);
            c.bucket_ms.push(r.bucket_ms);
            c.source.push(r.source);
            c.open_ms.push(r.open_ms);
            c.open.push(r.open);
            c.high.push(r.high);
            c.low.push(r.low);
            c.close_ms.push(r.close_ms);
            c.close.push(r.close);
            c.market_cap.push(r.market_cap);
            c.rank_ms.push(r.rank_ms);
            c.rank.push(r.rank);
            c.volume_24h.push(r.volume_24h);
            c.volume_from.push(r.volume_from);
            c.volume_to.push(r.volume_to);
        }
        c
    }
}

/// Whether `minutes` holds a row in any of the buckets `$1`.
const SELECT_HELD_MINUTES: &str =
    "SELECT EXISTS (SELECT 1 FROM minutes WHERE bucket_ms = ANY($1::bigint[]))";

/// New rows of `minutes`, in the binary copy format.
const COPY_MINUTES: &str = concat!("COPY minutes (", columns!(), ") FROM STDIN (FORMAT binary)");

/// The types of [`COPY_MINUTES`]' columns, in order.
const MINUTE_TYPES: [tokio_postgres::types::Type; 16] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT2,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT4,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
    ]
};

/// Writes a batch's recorded minutes (from the roll-up's mark on) into `minutes`. A minute
/// the table holds no row of yet (a snapshot opening a new minute) is copied in (`COPY …
/// FORMAT binary`, no conflict to look for row by row, about a third of what the merge's
/// insert costs); a minute it holds (a snapshot within the open minute: most of what a
/// recorder polling more often than once a minute writes) goes through the merge, a price
/// snapshot's rows first through an update in place ([`update_sampled_minutes`]): if some
/// of them were not there (a coin new in the minute), all of them go through the merge,
/// which changes nothing where the update already merged. Should a row of a new minute appear between the look and the copy (a
/// backfill writing the same minute), the copy fails on the key, is rolled back to a
/// savepoint, and the merge writes the rows: the outcome is the merge's either way.
async fn write_minutes(
    tx: &deadpool_postgres::Transaction<'_>,
    candles: &[Candle],
) -> Result<(), Error> {
    if candles.is_empty() {
        return Ok(());
    }
    let mut buckets: Vec<i64> = candles.iter().map(|c| c.time).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let held: bool = tx.query_one(SELECT_HELD_MINUTES, &[&buckets]).await?.get(0);
    if !held {
        tx.batch_execute("SAVEPOINT copy_minutes").await?;
        match copy_minutes(tx, candles).await {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT copy_minutes").await?;
                return Ok(());
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT copy_minutes")
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    } else if update_sampled_minutes(tx, candles).await? == Some(candles.len() as u64) {
        // Every row was there (the keys are unique: one row updated per candle).
        return Ok(());
    }
    write_recorded(tx, INSERT_RECORDED_MINUTES, candles).await
}

/// Merges `candles` (unique `1m` rows) into the rows of `minutes` they meet if they are a
/// price snapshot's ([`UPDATE_SAMPLED_MINUTES`]); returns how many it met, `None` for other
/// rows (left to the merge).
async fn update_sampled_minutes(
    tx: &deadpool_postgres::Transaction<'_>,
    candles: &[Candle],
) -> Result<Option<u64>, Error> {
    let sampled = candles.iter().all(|c| {
        c.ranked.is_none()
            && c.price.is_some_and(|p| {
                p.open_time == p.close_time
                    && p.open == p.close
                    && p.high == p.close
                    && p.low == p.close
            })
    });
    if !sampled {
        return Ok(None);
    }
    let n = candles.len();
    let (mut symbol, mut bucket, mut time) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut price, mut cap) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for c in candles {
        let p = c.price.as_ref().expect("sampled rows have a price");
        symbol.push(crate::symbol_key(&c.symbol).into_string());
        bucket.push(c.time);
        time.push(p.close_time);
        price.push(p.close);
        cap.push(p.market_cap_usd);
    }
    let stmt = tx.prepare_cached(UPDATE_SAMPLED_MINUTES).await?;
    Ok(Some(
        tx.execute(&stmt, &[&symbol, &bucket, &time, &price, &cap])
            .await?,
    ))
}

/// The rows [`INSERT_RECORDED_MINUTES`] would insert where none is: recorded (`source` 0),
/// without the backfill's volumes.
async fn copy_minutes(
    tx: &deadpool_postgres::Transaction<'_>,
    candles: &[Candle],
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(COPY_MINUTES).await?;
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &MINUTE_TYPES);
    let mut writer = std::pin::pin!(writer);
    let none: Option<f64> = None;
    for candle in candles {
        let r = Row::from(candle);
        let symbol = crate::symbol_key(&r.symbol);
        writer
            .as_mut()
            .write(&[
                &symbol.as_str(),
                &r.span,
                &r.bucket_ms,
                &0i16,
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
                &none,
                &none,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Writes recorded candles (unique, in the table's key order) through the merge with
/// `insert` ([`INSERT_RECORDED`] or [`INSERT_RECORDED_MINUTES`]): one statement.
async fn write_recorded(
    tx: &deadpool_postgres::Transaction<'_>,
    insert: &str,
    candles: &[Candle],
) -> Result<(), Error> {
    if candles.is_empty() {
        return Ok(());
    }
    let c = Columns::of(candles);
    let stmt = tx.prepare_cached(insert).await?;
    tx.execute(
        &stmt,
        &[
            &c.symbol,
            &c.span,
            &c.bucket_ms,
            &c.open_ms,
            &c.open,
            &c.high,
            &c.low,
            &c.close_ms,
            &c.close,
            &c.market_cap,
            &c.rank_ms,
            &c.rank,
            &c.volume_24h,
        ],
    )
    .await?;
    Ok(())
}

impl CandleStore for PostgresStore {
    async fn migrate(&self) -> Result<(), Error> {
        let mut client = self.client().await?;
        migrate(&mut client, migrate::POSTGRESQL).await
    }

    async fn apply(&self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mark: i64 = tx.query_one(SELECT_THROUGH_SHARED, &[]).await?.get(0);
        let (hot, rest) = rollup::split_minutes(batch.to_write(mark), mark);
        write_minutes(&tx, &hot).await?;
        write_recorded(&tx, INSERT_RECORDED, &rest).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rollup(&self, until: i64) -> Result<Rolled, Error> {
        // Marks are Unix ms ≥ 0 (the table's check): nothing before 1970 is rolled up.
        let until = Interval::M1.bucket_start(until.max(0));
        let mut client = self.client().await?;
        let mut done = Rolled::default();
        loop {
            // Steps of one transaction each: writes wait for one step at most.
            let tx = client.transaction().await?;
            let from: i64 = tx.query_one(SELECT_THROUGH_FOR_UPDATE, &[]).await?.get(0);
            if until <= from {
                tx.commit().await?;
                done.through = from;
                return Ok(done);
            }
            // From the first minute there is: no empty steps across the years.
            let first: Option<i64> = tx.query_one(SELECT_FIRST_HOT, &[&from]).await?.get(0);
            let start = first.unwrap_or(until).clamp(from, until);
            let to = until.min(start.saturating_add(rollup::STEP_MS));
            let stmt = tx.prepare_cached(SELECT_HOT).await?;
            let minutes = tx
                .query(&stmt, &[&from, &to])
                .await?
                .iter()
                .map(read_row)
                .collect::<Result<Vec<_>, _>>()?;
            let rows = roll_up(&minutes, &COARSE);
            write_recorded(&tx, INSERT_RECORDED, &rows).await?;
            // The minutes rolled up leave `minutes` for `candles` as the mark passes.
            for stmt in [MOVE_RECORDED, MOVE_BACKFILLED] {
                let stmt = tx.prepare_cached(stmt).await?;
                tx.execute(&stmt, &[&from, &to]).await?;
            }
            let stmt = tx.prepare_cached(DELETE_MOVED).await?;
            tx.execute(&stmt, &[&to]).await?;
            tx.execute(UPDATE_THROUGH, &[&to]).await?;
            tx.commit().await?;
            done.minutes += minutes.len() as u64;
            done.rows += rows.len() as u64;
            done.through = to;
            if to >= until {
                return Ok(done);
            }
        }
    }

    async fn upsert_backfilled(&self, candles: Vec<Candle>) -> Result<(), Error> {
        check_backfilled(&candles)?;
        if candles.is_empty() {
            return Ok(());
        }
        // One statement may not touch a row twice: the last candle given for a key wins,
        // as it would in a sequence of upserts.
        let mut unique: Vec<&Candle> = Vec::with_capacity(candles.len());
        let mut seen = std::collections::HashMap::new();
        for c in &candles {
            let key = (crate::symbol_key(&c.symbol), c.interval, c.time);
            match seen.get(&key) {
                Some(&i) => unique[i] = c,
                None => {
                    seen.insert(key, unique.len());
                    unique.push(c);
                }
            }
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mark: i64 = tx.query_one(SELECT_THROUGH_SHARED, &[]).await?.get(0);
        let (hot, rest): (Vec<&Candle>, Vec<&Candle>) = unique
            .into_iter()
            .partition(|c| rollup::is_unrolled_minute(c.interval, c.time, mark));
        for (insert, rows) in [(INSERT_BACKFILLED_MINUTES, hot), (INSERT_BACKFILLED, rest)] {
            if rows.is_empty() {
                continue;
            }
            let c = Columns::of(rows);
            let stmt = tx.prepare_cached(insert).await?;
            tx.execute(
                &stmt,
                &[
                    &c.symbol,
                    &c.span,
                    &c.bucket_ms,
                    &c.source,
                    &c.open_ms,
                    &c.open,
                    &c.high,
                    &c.low,
                    &c.close_ms,
                    &c.close,
                    &c.market_cap,
                    &c.rank_ms,
                    &c.rank,
                    &c.volume_24h,
                    &c.volume_from,
                    &c.volume_to,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn range(&self, range: &Range) -> Result<Page, Error> {
        let (symbol, lower, upper, limit) = range.bounds()?;
        let interval = range.interval;
        let span = interval.as_str();
        let client = self.client().await?;
        // A range complete before the mark's bucket: the plain query.
        if self.mark.covers(interval, upper) {
            let stmt = client.prepare_cached(SELECT_RANGE).await?;
            let rows = client
                .query(&stmt, &[&symbol.as_str(), &span, &lower, &upper, &limit])
                .await?;
            let candles = rows.iter().map(read_row).collect::<Result<_, _>>()?;
            return Ok(Page::from_rows(candles, limit));
        }
        // The first probe of `minutes` (which holds no minute before 1970).
        let probe_from = Interval::M1.bucket_start(lower.max(0));
        let stmt = client.prepare_cached(SELECT_THROUGH).await?;
        if interval == Interval::M1 {
            let range = client.prepare_cached(SELECT_RANGE_MINUTES).await?;
            let rows = client
                .query(
                    &range,
                    &[&symbol.as_str(), &span, &lower, &upper, &limit, &probe_from],
                )
                .await?;
            let mut candles: Vec<Candle> = rows.iter().map(read_row).collect::<Result<_, _>>()?;
            self.mark.saw(client.query_one(&stmt, &[]).await?.get(0));
            candles.sort_by_key(|c| c.time);
            candles.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            return Ok(Page::from_rows(candles, limit));
        }
        let through = stmt;
        let stmt = client.prepare_cached(SELECT_RANGE_ROLLED).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &symbol.as_str(),
                    &span,
                    &lower,
                    &upper,
                    &limit,
                    &probe_from,
                    &rollup::minutes_upper(interval, upper),
                    &interval.millis(),
                ],
            )
            .await?;
        let (minutes, stored): (Vec<Candle>, Vec<Candle>) = rows
            .iter()
            .map(read_row)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .partition(|c| c.interval == Interval::M1);
        self.mark.saw(client.query_one(&through, &[]).await?.get(0));
        let candles = rollup::range_rows(stored, &minutes, interval, lower, upper, limit);
        Ok(Page::from_rows(candles, limit))
    }

    async fn latest(&self, interval: Interval) -> Result<Vec<Candle>, Error> {
        let mut client = self.client().await?;
        // One snapshot for the mark and the rows.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let read = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<Candle>, Error> {
            rows.iter().map(read_row).collect()
        };
        let mark: i64 = tx.query_one(SELECT_THROUGH, &[]).await?.get(0);
        let stmt = tx.prepare_cached(SELECT_HOT).await?;
        let minutes = read(tx.query(&stmt, &[&mark, &i64::MAX]).await?)?;
        if interval == Interval::M1 {
            // `candles`' minutes are all before `minutes`' ones.
            let stmt = tx.prepare_cached(SELECT_LATEST).await?;
            let stored = read(tx.query(&stmt, &[&interval.as_str()]).await?)?;
            tx.commit().await?;
            return Ok(rollup::latest_rows(stored, minutes, &[], interval));
        }
        let stmt = tx.prepare_cached(SELECT_CLOSED_BY).await?;
        let latest = read(
            tx.query(
                &stmt,
                &[
                    &interval.as_str(),
                    &i64::MAX,
                    &rollup::open_from(interval, mark),
                ],
            )
            .await?,
        )?;
        let stmt = tx.prepare_cached(SELECT_RECENT).await?;
        let recent = read(
            tx.query(
                &stmt,
                &[&interval.as_str(), &rollup::open_from(interval, mark)],
            )
            .await?,
        )?;
        tx.commit().await?;
        Ok(rollup::latest_rows(latest, recent, &minutes, interval))
    }

    async fn prune(&self, interval: Interval, before: i64) -> Result<u64, Error> {
        let span = interval.as_str();
        let mut client = self.client().await?;
        // Minutes not rolled up yet are the only record of their samples in the coarser
        // intervals: kept whatever the retention says (the mark only moves on).
        let before = if interval == Interval::M1 {
            let mark: i64 = client.query_one(SELECT_THROUGH, &[]).await?.get(0);
            before.min(mark)
        } else {
            before
        };
        let mut total = 0u64;
        let mut after = String::new();
        // Steps of one short transaction each, as in SQLite: the row locks a step takes are
        // released before the next, so concurrent batches wait for one step at most.
        loop {
            let tx = client.transaction().await?;
            let next = tx.prepare_cached(NEXT_SYMBOL).await?;
            let delete = tx.prepare_cached(DELETE_EXPIRED).await?;
            let mut deleted = 0u64;
            let mut done = false;
            for _ in 0..PRUNE_SYMBOLS_PER_STEP {
                let symbol: Option<String> = tx.query_one(&next, &[&after]).await?.get(0);
                let Some(symbol) = symbol else {
                    done = true;
                    break;
                };
                let room = PRUNE_STEP as u64 - deleted;
                let n = tx
                    .execute(&delete, &[&symbol, &span, &before, &(room as i64)])
                    .await?;
                deleted += n;
                if n == room {
                    break; // perhaps more of this symbol: the next step starts with it again
                }
                after = symbol;
            }
            tx.commit().await?;
            total += deleted;
            if done {
                return Ok(total);
            }
        }
    }
    async fn backfill_progress(&self) -> Result<Vec<BackfillProgress>, Error> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SELECT_PROGRESS).await?;
        let rows = client.query(&stmt, &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(BackfillProgress {
                    symbol: CompactString::from(r.try_get::<_, &str>(0)?),
                    interval: r.try_get::<_, &str>(1)?.parse()?,
                    oldest: r.try_get(2)?,
                    newest: r.try_get(3)?,
                    complete: r.try_get(4)?,
                    fetched_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn record_backfill_progress(&self, p: BackfillProgress) -> Result<(), Error> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(UPSERT_PROGRESS).await?;
        let symbol = crate::symbol_key(&p.symbol);
        client
            .execute(
                &stmt,
                &[
                    &symbol.as_str(),
                    &p.interval.as_str(),
                    &p.oldest,
                    &p.newest,
                    &p.complete,
                    &p.fetched_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn closes_at(&self, at: i64) -> Result<Vec<Candle>, Error> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let read = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<Candle>, Error> {
            rows.iter().map(read_row).collect()
        };
        let mark: i64 = tx.query_one(SELECT_THROUGH, &[]).await?.get(0);
        let closed_by = tx.prepare_cached(SELECT_CLOSED_BY).await?;
        let stored = read(
            tx.query(&closed_by, &[&Interval::M1.as_str(), &at, &i64::MAX])
                .await?,
        )?;
        // Needed by every interval whose mark's bucket starts by `at` (the daily one starts
        // first: every interval divides a day).
        let minutes = if at >= rollup::open_from(Interval::D1, mark) {
            let stmt = tx.prepare_cached(SELECT_HOT).await?;
            read(tx.query(&stmt, &[&mark, &i64::MAX]).await?)?
        } else {
            Vec::new()
        };
        let later = rollup::closes_rows(minutes.clone(), &[], Interval::M1, at);
        let mut candidates = rollup::prefer_later(stored, later);
        for interval in COARSE {
            // Stored buckets before the mark's are complete; from it on, overlaid.
            let open = rollup::open_from(interval, mark);
            let stored = read(
                tx.query(&closed_by, &[&interval.as_str(), &at, &open])
                    .await?,
            )?;
            if at < open {
                candidates.extend(stored);
                continue;
            }
            let stmt = tx.prepare_cached(SELECT_RECENT).await?;
            let recent = read(tx.query(&stmt, &[&interval.as_str(), &open]).await?)?;
            let later = rollup::closes_rows(recent, &minutes, interval, at);
            candidates.extend(rollup::prefer_later(stored, later));
        }
        tx.commit().await?;
        Ok(pick_closes(candidates))
    }
}
