//! The snapshot store: where a snapshot lives so that any node can fetch it by its hash, also
//! after the actor that made it restarted, and where the latest notice of each kind is kept.
//!
//! **Why this shape.** Snapshots go into a JetStream *object store* under their blake3 hash:
//! content addressing makes a put idempotent and lets every reader verify what it got;
//! the object store chunks, so a 10,000-coin snapshot (about 1 MB) fits whatever the server's
//! `max_payload`. Notices are published through JetStream into a small stream that keeps the
//! last few per subject, so the notice *is* the record of what is current: a fresh API node
//! or a restarted actor reads the last notice of each kind instead of waiting for the next
//! change, and there is no second "latest" key that could disagree with what was announced.
//! Core NATS subscribers receive the same publish as a plain message, so the live path costs
//! one small message per change.

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, object_store, stream};
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use topcoins_schemas::{HashNotice, Kind, NoticeError, SnapshotHash};

use crate::subjects::{NOTICE_STREAM, SNAPSHOT_BUCKET, hash_subject};

/// Notices kept per subject in the notice stream (history for tools; readers use the last).
pub const NOTICES_KEPT: i64 = 64;

/// What went wrong, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// NATS or JetStream did not answer or refused; try again later.
    Unavailable,
    /// No snapshot stored under that hash.
    NotFound,
    /// The stored bytes are not the ones the hash names.
    HashMismatch,
    /// A stored notice does not decode.
    BadNotice,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        Self::new(StoreErrorKind::Unavailable, format!("{what}: {err}"))
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl From<NoticeError> for StoreError {
    fn from(e: NoticeError) -> Self {
        Self::new(StoreErrorKind::BadNotice, format!("stored notice: {e}"))
    }
}

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    js: jetstream::Context,
    objects: object_store::ObjectStore,
    notices: stream::Stream,
}

impl SnapshotStore {
    /// Opens the store, creating the bucket and the notice stream on first use.
    pub async fn open(client: Client) -> Result<Self, StoreError> {
        let js = jetstream::new(client);
        let notices = js
            .get_or_create_stream(stream::Config {
                name: NOTICE_STREAM.to_owned(),
                subjects: Kind::ALL
                    .iter()
                    .map(|k| hash_subject(*k).to_owned())
                    .collect(),
                max_messages_per_subject: NOTICES_KEPT,
                storage: stream::StorageType::File,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable("notice stream", e))?;
        let objects = match js.get_object_store(SNAPSHOT_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: SNAPSHOT_BUCKET.to_owned(),
                    description: Some("topcoins snapshots by blake3 hash".to_owned()),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| StoreError::unavailable("snapshot bucket", e))?,
        };
        Ok(Self {
            js,
            objects,
            notices,
        })
    }

    /// Opens the store, retrying with backoff until NATS answers; `None` if `shutdown` fires
    /// first. Services start before NATS is reachable and wait here.
    pub async fn open_when_ready(
        client: &Client,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::open(client.clone()).await {
                Ok(store) => return Some(store),
                Err(e) => tracing::warn!(error = %e, "snapshot store not available yet; retrying"),
            }
            tokio::select! {
                _ = &mut *shutdown => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Stores `bytes` under `hash` unless already there. The caller made `hash` from `bytes`.
    pub async fn put(&self, hash: SnapshotHash, bytes: &[u8]) -> Result<(), StoreError> {
        let name = hash.to_hex();
        if let Ok(info) = self.objects.info(&name).await
            && !info.deleted
        {
            return Ok(());
        }
        let mut reader = bytes;
        self.objects
            .put(name.as_str(), &mut reader)
            .await
            .map_err(|e| StoreError::unavailable("snapshot put", e))?;
        Ok(())
    }

    /// Fetches the snapshot named `hash` and checks that its bytes are the ones the hash names.
    pub async fn fetch(&self, hash: SnapshotHash) -> Result<Bytes, StoreError> {
        let mut object = self.objects.get(hash.to_hex()).await.map_err(|e| {
            if matches!(e.kind(), object_store::GetErrorKind::NotFound) {
                StoreError::new(StoreErrorKind::NotFound, format!("no snapshot {hash}"))
            } else {
                StoreError::unavailable("snapshot get", e)
            }
        })?;
        let mut bytes = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::unavailable("snapshot read", e))?;
        if !hash.matches(&bytes) {
            return Err(StoreError::new(
                StoreErrorKind::HashMismatch,
                format!("stored bytes do not match hash {hash}"),
            ));
        }
        Ok(Bytes::from(bytes))
    }

    /// Publishes a hash notice and waits for JetStream to have it, so that once this returns
    /// the notice is also what [`SnapshotStore::latest`] answers.
    pub async fn announce(&self, kind: Kind, notice: &HashNotice) -> Result<(), StoreError> {
        let ack = self
            .js
            .publish(hash_subject(kind), notice.to_bytes().into())
            .await
            .map_err(|e| StoreError::unavailable("notice publish", e))?;
        ack.await
            .map_err(|e| StoreError::unavailable("notice ack", e))?;
        Ok(())
    }

    /// The last notice of `kind`, if any was ever published.
    pub async fn latest(&self, kind: Kind) -> Result<Option<HashNotice>, StoreError> {
        match self
            .notices
            .direct_get_last_for_subject(hash_subject(kind))
            .await
        {
            Ok(message) => Ok(Some(HashNotice::decode(&message.payload)?)),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(StoreError::unavailable("latest notice", e)),
        }
    }

    /// Deletes snapshots older than `retention`, except those in `keep`. Returns how many went.
    pub async fn prune(
        &self,
        keep: &[SnapshotHash],
        retention: Duration,
    ) -> Result<usize, StoreError> {
        let cutoff = OffsetDateTime::now_utc() - retention;
        let keep: Vec<String> = keep.iter().map(|h| h.to_hex()).collect();
        let mut list = self
            .objects
            .list()
            .await
            .map_err(|e| StoreError::unavailable("snapshot list", e))?;
        let mut doomed = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| StoreError::unavailable("snapshot list", e))?;
            let old = info.modified.is_some_and(|m| m < cutoff);
            if old && !info.deleted && !keep.contains(&info.name) {
                doomed.push(info.name);
            }
        }
        for name in &doomed {
            self.objects
                .delete(name)
                .await
                .map_err(|e| StoreError::unavailable("snapshot delete", e))?;
        }
        Ok(doomed.len())
    }
}
