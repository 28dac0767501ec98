//! [`RecordStore`] and [`AccountStore`] on PostgreSQL. Records are written with one
//! `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING` per batch.

use super::PostgresStore;
use crate::Error;
use crate::accounts::sql::{
    DELETE_OLD_RECORDS, DELETE_WATCH, INSERT_KEY, INSERT_USER, INSERT_WATCH,
    METRICS_PER_PRUNE_STEP, NEXT_RECORDED_METRIC, REVOKE_KEY, SELECT_KEY_BY_HASH, SELECT_KEYS,
    SELECT_RECORDS, SELECT_WATCHED_PAIRS, SELECT_WATCHLIST, TOUCH_KEY, USER_EXISTS,
};
use crate::accounts::{
    AccountStore, ApiKey, Record, RecordPage, RecordRange, RecordStore, User, Watch, hash_from,
};

const INSERT_RECORDS: &str = "INSERT INTO metric_records (metric, time_ms, value)
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::float8[])
     ON CONFLICT DO NOTHING";

fn read_key(r: &tokio_postgres::Row) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        prefix: r.try_get(2)?,
        hash: hash_from(r.try_get::<_, &[u8]>(3)?)?,
        created: r.try_get(4)?,
        last_used: r.try_get(5)?,
        revoked: r.try_get(6)?,
    })
}

async fn insert_key(client: &deadpool_postgres::Transaction<'_>, k: &ApiKey) -> Result<(), Error> {
    client
        .execute(
            INSERT_KEY,
            &[&k.id, &k.user_id, &k.prefix, &&k.hash[..], &k.created],
        )
        .await?;
    Ok(())
}

impl RecordStore for PostgresStore {
    async fn write_records(&self, records: Vec<Record>) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let metrics: Vec<&str> = records.iter().map(|r| r.metric.as_str()).collect();
        let times: Vec<i64> = records.iter().map(|r| r.time).collect();
        let values: Vec<f64> = records.iter().map(|r| r.value).collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(INSERT_RECORDS).await?;
        client.execute(&stmt, &[&metrics, &times, &values]).await?;
        Ok(())
    }

    async fn records(&self, range: &RecordRange) -> Result<RecordPage, Error> {
        let (lower, upper, limit) = range.bounds()?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(SELECT_RECORDS).await?;
        let rows = client
            .query(&stmt, &[&range.metric, &lower, &upper, &limit])
            .await?;
        let out = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(RecordPage::from_rows(out, limit))
    }

    async fn prune_records(&self, before: i64) -> Result<u64, Error> {
        let mut client = self.client().await?;
        let mut total = 0;
        let mut last = String::new();
        loop {
            let tx = client.transaction().await?;
            let mut more = true;
            for _ in 0..METRICS_PER_PRUNE_STEP {
                let Some(row) = tx.query_opt(NEXT_RECORDED_METRIC, &[&last]).await? else {
                    more = false;
                    break;
                };
                let metric: String = row.try_get(0)?;
                total += tx.execute(DELETE_OLD_RECORDS, &[&metric, &before]).await?;
                last = metric;
            }
            tx.commit().await?;
            if !more {
                return Ok(total);
            }
        }
    }
}

impl AccountStore for PostgresStore {
    async fn create_user(&self, user: User, key: ApiKey) -> Result<(), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(INSERT_USER, &[&user.id, &user.name, &user.created])
            .await?;
        insert_key(&tx, &key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_key(&self, key: ApiKey) -> Result<(), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if tx.query_opt(USER_EXISTS, &[&key.user_id]).await?.is_none() {
            return Err(Error::Database(format!("no user {}", key.user_id)));
        }
        insert_key(&tx, &key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<ApiKey>, Error> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SELECT_KEY_BY_HASH).await?;
        match client.query_opt(&stmt, &[&&hash[..]]).await? {
            Some(r) => Ok(Some(read_key(&r)?)),
            None => Ok(None),
        }
    }

    async fn keys(&self, user_id: &str) -> Result<Vec<ApiKey>, Error> {
        let client = self.client().await?;
        let rows = client.query(SELECT_KEYS, &[&user_id]).await?;
        rows.iter().map(read_key).collect()
    }

    async fn revoke_key(&self, user_id: &str, key_id: &str, now: i64) -> Result<bool, Error> {
        let client = self.client().await?;
        Ok(client
            .execute(REVOKE_KEY, &[&now, &key_id, &user_id])
            .await?
            > 0)
    }

    async fn touch_key(&self, key_id: &str, now: i64) -> Result<(), Error> {
        let client = self.client().await?;
        client.execute(TOUCH_KEY, &[&now, &key_id]).await?;
        Ok(())
    }

    async fn watch(&self, user_id: &str, w: Watch) -> Result<bool, Error> {
        let client = self.client().await?;
        let n = client
            .execute(
                INSERT_WATCH,
                &[&user_id, &w.metric, &w.exchange, &w.pair, &w.created],
            )
            .await?;
        Ok(n > 0)
    }

    async fn unwatch(&self, user_id: &str, metric: &str) -> Result<bool, Error> {
        let client = self.client().await?;
        Ok(client.execute(DELETE_WATCH, &[&user_id, &metric]).await? > 0)
    }

    async fn watchlist(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Watch>, Error> {
        let client = self.client().await?;
        let limit = limit.clamp(1, crate::MAX_LIMIT) as i64;
        let rows = client
            .query(SELECT_WATCHLIST, &[&user_id, &after.unwrap_or(""), &limit])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Watch {
                    metric: r.try_get(0)?,
                    exchange: r.try_get(1)?,
                    pair: r.try_get(2)?,
                    created: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn watched_pairs(&self, exchange: &str) -> Result<Vec<String>, Error> {
        let client = self.client().await?;
        let rows = client.query(SELECT_WATCHED_PAIRS, &[&exchange]).await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect()
    }
}
