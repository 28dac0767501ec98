//! [`RecordStore`] and [`AccountStore`] on SQLite: writes on the writer thread, each one
//! transaction; reads on the reader thread.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::SqliteStore;
use crate::Error;
use crate::accounts::sql::{
    DELETE_OLD_RECORDS, DELETE_WATCH, INSERT_KEY, INSERT_USER, INSERT_WATCH,
    METRICS_PER_PRUNE_STEP, NEXT_RECORDED_METRIC, REVOKE_KEY, SELECT_KEY_BY_HASH, SELECT_KEYS,
    SELECT_RECORDS, SELECT_WATCHED_PAIRS, SELECT_WATCHLIST, TOUCH_KEY, USER_EXISTS,
};
use crate::accounts::{
    AccountStore, ApiKey, Record, RecordPage, RecordRange, RecordStore, User, Watch, hash_from,
};

const INSERT_RECORD: &str =
    "INSERT INTO metric_records (metric, time_ms, value) VALUES (?1, ?2, ?3)
     ON CONFLICT DO NOTHING";

fn read_key(r: &rusqlite::Row<'_>) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: r.get(0)?,
        user_id: r.get(1)?,
        prefix: r.get(2)?,
        hash: hash_from(&r.get::<_, Vec<u8>>(3)?)?,
        created: r.get(4)?,
        last_used: r.get(5)?,
        revoked: r.get(6)?,
    })
}

fn insert_key(conn: &rusqlite::Connection, k: &ApiKey) -> Result<(), Error> {
    conn.prepare_cached(INSERT_KEY)?.execute(params![
        k.id,
        k.user_id,
        k.prefix,
        &k.hash[..],
        k.created
    ])?;
    Ok(())
}

impl RecordStore for SqliteStore {
    async fn write_records(&self, records: Vec<Record>) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(INSERT_RECORD)?;
                    for r in &records {
                        insert.execute(params![r.metric.as_str(), r.time, r.value])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn records(&self, range: &RecordRange) -> Result<RecordPage, Error> {
        let (lower, upper, limit) = range.bounds()?;
        let metric = range.metric.clone();
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_RECORDS)?;
                let mut rows = stmt.query(params![metric, lower, upper, limit])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push((r.get(0)?, r.get(1)?));
                }
                Ok(RecordPage::from_rows(out, limit))
            })
            .await
    }

    async fn prune_records(&self, before: i64) -> Result<u64, Error> {
        let mut total = 0;
        let mut after = Some(String::new());
        while let Some(from) = after {
            let (n, next) = self
                .writer
                .call(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let mut deleted = 0;
                    let mut last = from;
                    let mut more = true;
                    {
                        let mut next = tx.prepare_cached(NEXT_RECORDED_METRIC)?;
                        let mut delete = tx.prepare_cached(DELETE_OLD_RECORDS)?;
                        for _ in 0..METRICS_PER_PRUNE_STEP {
                            let metric: Option<String> =
                                next.query_row([&last], |r| r.get(0)).optional()?;
                            let Some(metric) = metric else {
                                more = false;
                                break;
                            };
                            deleted += delete.execute(params![metric, before])? as u64;
                            last = metric;
                        }
                    }
                    tx.commit()?;
                    Ok((deleted, more.then_some(last)))
                })
                .await?;
            total += n;
            after = next;
        }
        Ok(total)
    }
}

impl AccountStore for SqliteStore {
    async fn create_user(&self, user: User, key: ApiKey) -> Result<(), Error> {
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(INSERT_USER)?.execute(params![
                    user.id,
                    user.name,
                    user.created
                ])?;
                insert_key(&tx, &key)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn add_key(&self, key: ApiKey) -> Result<(), Error> {
        self.writer
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let exists: Option<i64> = tx
                    .prepare_cached(USER_EXISTS)?
                    .query_row([&key.user_id], |r| r.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Err(Error::Database(format!("no user {}", key.user_id)));
                }
                insert_key(&tx, &key)?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<ApiKey>, Error> {
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_KEY_BY_HASH)?;
                let mut rows = stmt.query([&hash[..]])?;
                match rows.next()? {
                    Some(r) => Ok(Some(read_key(r)?)),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn keys(&self, user_id: &str) -> Result<Vec<ApiKey>, Error> {
        let user_id = user_id.to_owned();
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_KEYS)?;
                let mut rows = stmt.query([&user_id])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(read_key(r)?);
                }
                Ok(out)
            })
            .await
    }

    async fn revoke_key(&self, user_id: &str, key_id: &str, now: i64) -> Result<bool, Error> {
        let (user_id, key_id) = (user_id.to_owned(), key_id.to_owned());
        self.writer
            .call(move |conn| {
                let n = conn
                    .prepare_cached(REVOKE_KEY)?
                    .execute(params![now, key_id, user_id])?;
                Ok(n > 0)
            })
            .await
    }

    async fn touch_key(&self, key_id: &str, now: i64) -> Result<(), Error> {
        let key_id = key_id.to_owned();
        self.writer
            .call(move |conn| {
                conn.prepare_cached(TOUCH_KEY)?
                    .execute(params![now, key_id])?;
                Ok(())
            })
            .await
    }

    async fn watch(&self, user_id: &str, w: Watch) -> Result<bool, Error> {
        let user_id = user_id.to_owned();
        self.writer
            .call(move |conn| {
                let n = conn
                    .prepare_cached(INSERT_WATCH)?
                    .execute(params![user_id, w.metric, w.exchange, w.pair, w.created])?;
                Ok(n > 0)
            })
            .await
    }

    async fn unwatch(&self, user_id: &str, metric: &str) -> Result<bool, Error> {
        let (user_id, metric) = (user_id.to_owned(), metric.to_owned());
        self.writer
            .call(move |conn| {
                let n = conn
                    .prepare_cached(DELETE_WATCH)?
                    .execute(params![user_id, metric])?;
                Ok(n > 0)
            })
            .await
    }

    async fn watchlist(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Watch>, Error> {
        let user_id = user_id.to_owned();
        let after = after.unwrap_or("").to_owned();
        let limit = limit.clamp(1, crate::MAX_LIMIT) as i64;
        self.reader
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_WATCHLIST)?;
                let mut rows = stmt.query(params![user_id, after, limit])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(Watch {
                        metric: r.get(0)?,
                        exchange: r.get(1)?,
                        pair: r.get(2)?,
                        created: r.get(3)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn watched_pairs(&self, exchange: &str) -> Result<Vec<String>, Error> {
        let exchange = exchange.to_owned();
        // Read on the writer: the caller has just changed a watchlist there and wants what
        // it committed (the reader would see it too, WAL being read-after-commit, but the
        // writer's view is the one that cannot lag).
        self.writer
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(SELECT_WATCHED_PAIRS)?;
                let mut rows = stmt.query([&exchange])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(r.get(0)?);
                }
                Ok(out)
            })
            .await
    }
}
