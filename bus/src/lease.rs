//! Who polls, when several instances of an actor run: a lease in a JetStream key-value bucket.
//!
//! One bucket per kind (`topcoins_lease_prices`, `…_ranking`) whose entries expire `ttl` after
//! their last write. The holder renews the lease every cycle (a compare-and-set on its own
//! revision); another instance can take it only by creating the key, which succeeds only once
//! the holder's entry has expired or been released. So exactly one instance holds it at a
//! time, and when the holder dies the lease is free again within `ttl`.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, kv};
use topcoins_schemas::Kind;

use crate::TraceContext;
use crate::store::{StoreError, StoreErrorKind};

pub struct Lease {
    kv: kv::Store,
    key: &'static str,
    holder: String,
    revision: Option<u64>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::from_parts(StoreErrorKind::Unavailable, format!("{what}: {e}"))
}

impl Lease {
    /// Opens (creating on first use) the lease bucket for `kind`; entries live `ttl`.
    pub async fn open(
        client: Client,
        kind: Kind,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client);
        let bucket = format!("topcoins_lease_{}", kind.as_str());
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: format!("which {} actor polls", kind.as_str()),
                    history: 1,
                    max_age: ttl,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable("lease bucket", e))?,
        };
        Ok(Self {
            kv,
            key: kind.as_str(),
            holder: TraceContext::new().trace_id_hex(),
            revision: None,
        })
    }

    /// This instance's name in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn held(&self) -> bool {
        self.revision.is_some()
    }

    /// Takes the lease if it is free, or renews it if held. Returns whether this instance holds
    /// it now.
    pub async fn acquire(&mut self) -> Result<bool, StoreError> {
        if let Some(revision) = self.revision {
            match self
                .kv
                .update(self.key, self.holder.clone().into(), revision)
                .await
            {
                Ok(next) => {
                    self.revision = Some(next);
                    return Ok(true);
                }
                // Expired and taken by another, or gone: no longer ours.
                Err(_) => self.revision = None,
            }
        }
        match self.kv.create(self.key, self.holder.clone().into()).await {
            Ok(revision) => {
                self.revision = Some(revision);
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(unavailable("lease", e)),
        }
    }

    /// Gives the lease up (at shutdown), so another instance takes over at once.
    pub async fn release(&mut self) {
        if self.revision.take().is_some() {
            let _ = self.kv.delete(self.key).await;
        }
    }
}
