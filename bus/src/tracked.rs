//! The tracked set's run-time part: the pairs on users' watchlists, per exchange, in the
//! JetStream key-value bucket [`TRACKED_BUCKET`] (key: the exchange id; value: a JSON array
//! of pairs, sorted). The exchange actors watch it and poll `TOPCOINS_PAIRS` plus these from
//! their next cycle on; API nodes write it after each watchlist change.
//!
//! **Consistency.** The database is the truth (the watchlists); the bucket is a view of it.
//! An API node that changed a watchlist reads the exchange's watched pairs from the database
//! *after* its commit and after reading the key's revision, and writes them only if the key
//! is still at that revision (compare and set, retried on a conflict). So the last write to
//! land was computed after every commit whose writer had landed before: two nodes changing
//! watchlists at once cannot leave a stale set behind.

use std::future::Future;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio::sync::watch;

use crate::store::StoreError;

/// The bucket of watched pairs per exchange.
pub const TRACKED_BUCKET: &str = "topcoins-tracked";

/// Compare-and-set tries before giving up (each lost try means another node just wrote).
const TRIES: usize = 20;

/// The watched pairs of every exchange, as the bucket holds them.
#[derive(Clone)]
pub struct Tracked {
    kv: kv::Store,
}

impl Tracked {
    /// Opens the bucket, creating it on first use.
    pub async fn open(client: &Client, replicas: usize) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        let kv = match js.get_key_value(TRACKED_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: TRACKED_BUCKET.to_owned(),
                    description: "pairs on users' watchlists, per exchange".to_owned(),
                    history: 1,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| StoreError::unavailable("tracked bucket", e))?,
        };
        Ok(Self { kv })
    }

    /// Sets `exchange`'s watched pairs to what `read` returns, read after the key's
    /// revision (see the module docs).
    pub async fn refresh<F, Fut, E>(&self, exchange: &str, read: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<String>, E>>,
        E: std::fmt::Display,
    {
        for _ in 0..TRIES {
            let entry = self
                .kv
                .entry(exchange)
                .await
                .map_err(|e| StoreError::unavailable("tracked entry", e))?;
            let pairs = read()
                .await
                .map_err(|e| StoreError::unavailable("watched pairs", e))?;
            let value = serde_json::to_vec(&pairs)
                .expect("strings serialise")
                .into();
            let written = match entry {
                Some(entry) => self
                    .kv
                    .update(exchange, value, entry.revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision),
                None => self
                    .kv
                    .create(exchange, value)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists),
            };
            match written {
                Ok(()) => return Ok(()),
                Err(true) => continue,
                Err(false) => {
                    return Err(StoreError::unavailable(
                        "tracked update",
                        format!("could not write {exchange}'s watched pairs"),
                    ));
                }
            }
        }
        Err(StoreError::unavailable(
            "tracked update",
            format!("{exchange}'s watched pairs kept changing under {TRIES} tries"),
        ))
    }

    /// `exchange`'s watched pairs now, and on every change, until the connection closes for
    /// good: a watch of the key (its current value first). A value that is not a JSON array
    /// of strings is logged and ignored (the last good set stays).
    pub fn follow(&self, exchange: &'static str) -> watch::Receiver<Vec<String>> {
        let (tx, rx) = watch::channel(Vec::new());
        let kv = self.kv.clone();
        tokio::spawn(async move {
            loop {
                let mut updates = match kv.watch_with_history(exchange).await {
                    Ok(updates) => updates,
                    Err(e) => {
                        tracing::debug!(exchange, error = %e, "tracked bucket watch: retrying");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                while let Some(update) = updates.next().await {
                    let Ok(entry) = update else { break };
                    let pairs = match entry.operation {
                        kv::Operation::Put => {
                            match serde_json::from_slice::<Vec<String>>(&entry.value) {
                                Ok(pairs) => pairs,
                                Err(e) => {
                                    tracing::warn!(exchange, error = %e, "tracked bucket: not a list of pairs; ignored");
                                    continue;
                                }
                            }
                        }
                        kv::Operation::Delete | kv::Operation::Purge => Vec::new(),
                    };
                    if tx.send(pairs).is_err() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rx
    }
}
