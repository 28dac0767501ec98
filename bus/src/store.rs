//! The snapshot store: where a snapshot lives so that any node can fetch it by its hash, also
//! after the actor that made it restarted, and where the latest notice of each kind is kept.
//!
//! **Why this shape.** Snapshots are messages in a JetStream stream, one subject per hash
//! (`topcoins-snapshots.<hash>.<chunk>`, the last message per subject kept), read back with a
//! *direct get*: one request-reply, served by the stream without creating a consumer, so the
//! path from a notice to a node serving the new data stays short and cheap for the server
//! however many nodes fetch at once. A snapshot larger than [`CHUNK_BYTES`] (a 10,000-coin one
//! is about 1 MB) is split into chunks, so it fits any server's `max_payload`; chunk 0 is
//! written last and says how many there are, so a snapshot is visible only when whole.
//! Content addressing makes a put idempotent and lets every reader verify what it got.
//! (A JetStream object store was the first version: it does the chunking itself, but every
//! get creates an ordered consumer — several round trips and server work per node per change,
//! which measured as most of the propagation time; see `bench/RESULTS.md`.)
//!
//! Notices are published through JetStream into a small stream that keeps the last few per
//! subject, so the notice *is* the record of what is current: a fresh API node or a restarted
//! actor reads the last notice of each kind instead of waiting for the next change, and there
//! is no second "latest" key that could disagree with what was announced. Core NATS
//! subscribers receive the same publish as a plain message, so the live path costs one small
//! message per change.

use std::time::Duration;

use async_nats::Client;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use time::OffsetDateTime;
use topcoins_runtime::{Backoff, retry_until_shutdown};
use topcoins_schemas::{HashNotice, Kind, NoticeError, SnapshotHash};

use crate::subjects::{
    KINDS, NOTICE_STREAM, RECORD_STREAM, RECORDER_CONSUMER, SNAPSHOT_PREFIX, SNAPSHOT_STREAM,
    current_subject, hash_subject, snapshot_subject, stream_subjects,
};

/// Largest piece of a snapshot in one message; well under NATS's default 1 MiB `max_payload`.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Header on every chunk: how many chunks the snapshot has.
const CHUNKS_HEADER: &str = "Topcoins-Chunks";
/// Header on the chunks of a snapshot stored with its kind (see [`SnapshotStore::put_kind`]).
pub(crate) const KIND_HEADER: &str = "Topcoins-Kind";

/// Pending notices [`SnapshotStore::recorder_floor`] reads the hashes of, at most; behind
/// that, snapshots are spared by time.
pub const PENDING_READ: usize = 1000;

/// What the recorder still needs: see [`SnapshotStore::recorder_floor`].
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    /// When the first notice it has not acknowledged was published.
    pub since: OffsetDateTime,
    /// The snapshots its first pending notices name.
    pub pending: Vec<SnapshotHash>,
    /// How long the record stream keeps notices.
    pub kept: Duration,
}

/// Notices kept per subject in the notice stream (readers use the last; the recorder reads
/// the record stream, which keeps every notice for its retention: see [`crate::durable`]).
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
    /// Another publisher announced a notice of this kind since the one this announcement
    /// follows: it was not published (see [`SnapshotStore::announce`]).
    Fenced,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    pub(crate) fn from_parts(kind: StoreErrorKind, message: String) -> Self {
        Self { kind, message }
    }

    fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
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

/// The last notice of a kind, with its place in the notice stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub notice: HashNotice,
    /// Its notice-stream sequence: what the next notice of the kind `follows`.
    pub sequence: u64,
}

/// The hash and chunk index a snapshot subject names.
pub(crate) fn parse_snapshot_subject(subject: &str) -> Option<(SnapshotHash, usize)> {
    let mut parts = subject
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_prefix('.')?
        .split('.');
    let hash = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((hash, index))
}

/// How many chunks a snapshot has, from the header of any of its chunks.
pub(crate) fn chunk_count(headers: Option<&HeaderMap>) -> Option<usize> {
    headers?
        .get(CHUNKS_HEADER)?
        .as_str()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_CHUNKS).contains(n))
}

/// More chunks than any snapshot has (4096 × 512 KiB = 2 GiB).
const MAX_CHUNKS: usize = 4096;

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    js: jetstream::Context,
    /// Copies of the streams this handle creates.
    replicas: usize,
    snapshots: stream::Stream,
    notices: stream::Stream,
}

fn is_not_found(kind: &stream::DirectGetErrorKind) -> bool {
    matches!(kind, stream::DirectGetErrorKind::NotFound)
}

impl SnapshotStore {
    /// Opens the store, creating the streams on first use (one replica each).
    pub async fn open(client: Client) -> Result<Self, StoreError> {
        Self::open_replicated(client, 1).await
    }

    /// Opens the store; streams created here get `replicas` copies (3 in a NATS cluster, so
    /// losing one server loses nothing).
    pub async fn open_replicated(client: Client, replicas: usize) -> Result<Self, StoreError> {
        let replicas = replicas.max(1);
        let js = jetstream::new(client);
        let notices = js
            .get_or_create_stream(stream::Config {
                name: NOTICE_STREAM.to_owned(),
                subjects: KINDS.iter().flat_map(|k| stream_subjects(*k)).collect(),
                max_messages_per_subject: NOTICES_KEPT,
                storage: stream::StorageType::File,
                allow_direct: true,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable("notice stream", e))?;
        let snapshots = js
            .get_or_create_stream(stream::Config {
                name: SNAPSHOT_STREAM.to_owned(),
                description: Some("topcoins snapshots by blake3 hash".to_owned()),
                subjects: vec![format!("{SNAPSHOT_PREFIX}.>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                allow_direct: true,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable("snapshot stream", e))?;
        let store = Self {
            js,
            replicas,
            snapshots,
            notices,
        };
        // A stream created by a version that knew fewer kinds learns the new subjects.
        store.ensure_kinds(KINDS).await?;
        Ok(store)
    }

    /// Makes the notice stream keep the notices of `kinds` too. The kinds of
    /// [`KINDS`] are kept from the start; a process that takes in a kind of its own (a test
    /// kind, a kind being introduced) ensures it before announcing or following it.
    pub async fn ensure_kinds(&self, kinds: &[Kind]) -> Result<(), StoreError> {
        let mut notices = self.notices.clone();
        let config = notices
            .info()
            .await
            .map_err(|e| StoreError::unavailable("notice stream", e))?
            .config
            .clone();
        let missing: Vec<String> = kinds
            .iter()
            .flat_map(|k| stream_subjects(*k))
            .filter(|s| !config.subjects.contains(s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut subjects = config.subjects.clone();
        subjects.extend(missing);
        self.js
            .update_stream(stream::Config { subjects, ..config })
            .await
            .map_err(|e| StoreError::unavailable("notice stream update", e))?;
        Ok(())
    }

    /// The record stream (created on first use): a mirror of the notice stream that keeps
    /// every notice for `retention`, which the recorder's durable consumer reads. A mirror,
    /// not a second stream on the same subjects (JetStream forbids overlapping subjects): the
    /// notice stream keeps the last few per kind however old, so the current notice never
    /// ages out, and the record keeps them all for a while. Its sequences are the notice
    /// stream's.
    pub(crate) async fn record_stream(
        &self,
        retention: Duration,
    ) -> Result<stream::Stream, StoreError> {
        let config = stream::Config {
            name: RECORD_STREAM.to_owned(),
            description: Some("topcoins notices for the recorder".to_owned()),
            mirror: Some(stream::Source {
                name: NOTICE_STREAM.to_owned(),
                ..Default::default()
            }),
            max_age: retention,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let mut record = self
            .js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| StoreError::unavailable("record stream", e))?;
        let current = record
            .info()
            .await
            .map_err(|e| StoreError::unavailable("record stream", e))?
            .config
            .clone();
        if current.max_age != retention {
            record = self
                .js
                .update_stream(stream::Config {
                    max_age: retention,
                    ..current
                })
                .await
                .map(|_| record)
                .map_err(|e| StoreError::unavailable("record stream update", e))?;
        }
        Ok(record)
    }

    /// What the recorder still needs, if a recorder exists and is behind: when the first
    /// notice it has not acknowledged was published, the hashes those notices name (the first
    /// [`PENDING_READ`] of them), and how long the record stream keeps notices. An error
    /// reading any of it is an error, so that a prune that cannot tell deletes nothing.
    pub async fn recorder_floor(&self) -> Result<Option<Floor>, StoreError> {
        let mut record = match self.js.get_stream(RECORD_STREAM).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::unavailable("record stream", e)),
        };
        let info = match record.consumer_info(RECORDER_CONSUMER).await {
            Ok(info) => info,
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::unavailable("recorder consumer info", e)),
        };
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(None);
        }
        let stream = record
            .info()
            .await
            .map_err(|e| StoreError::unavailable("record stream", e))?;
        let kept = stream.config.max_age;
        // The record loses notices only from its front (by age), so the first pending one is
        // at the ack floor's successor or, if that aged out, at the first still kept.
        let first = info
            .ack_floor
            .stream_sequence
            .saturating_add(1)
            .max(stream.state.first_sequence);
        let last = stream.state.last_sequence;
        let mut since = None;
        let mut pending = Vec::new();
        for sequence in first..=last.min(first.saturating_add(PENDING_READ as u64 - 1)) {
            let message = match record.get_raw_message(sequence).await {
                Ok(message) => message,
                // Aged out or deleted meanwhile: the next one says more.
                Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => {
                    continue;
                }
                Err(e) => return Err(StoreError::unavailable("record stream read", e)),
            };
            since.get_or_insert(message.time);
            if let Ok(notice) = HashNotice::decode(&message.payload) {
                pending.push(notice.hash);
            }
        }
        Ok(since.map(|since| Floor {
            since,
            pending,
            kept,
        }))
    }

    /// Opens the store, retrying until NATS answers (100 ms, doubling up to 2 s, with equal
    /// jitter: [`topcoins_runtime::Backoff`]); `None` if `shutdown` fires first. Services
    /// start before NATS is reachable and wait here.
    pub async fn open_when_ready(
        client: &Client,
        replicas: usize,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Option<Self> {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        retry_until_shutdown("snapshot store", backoff, shutdown, || {
            Self::open_replicated(client.clone(), replicas)
        })
        .await
    }

    /// Stores `bytes` under `hash` unless already there. The caller made `hash` from `bytes`.
    pub async fn put(&self, hash: SnapshotHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_with(None, hash, bytes).await
    }

    /// Stores a snapshot of `kind`, as [`SnapshotStore::put`], and names its kind in the chunks'
    /// headers: a follower that has the bytes pushed to it can then decode them before their
    /// notice arrives (the notice follows once the store has acknowledged every chunk).
    pub async fn put_kind(
        &self,
        kind: Kind,
        hash: SnapshotHash,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_with(Some(kind), hash, bytes).await
    }

    async fn put_with(
        &self,
        kind: Option<Kind>,
        hash: SnapshotHash,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        match self
            .snapshots
            .direct_get_last_for_subject(snapshot_subject(&hash, 0))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e.kind()) => {}
            Err(e) => return Err(StoreError::unavailable("snapshot lookup", e)),
        }
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(CHUNK_BYTES).collect()
        };
        // Chunk 0 last: once it is there, the whole snapshot is.
        for (index, chunk) in chunks.iter().enumerate().rev() {
            let mut headers = HeaderMap::new();
            headers.insert(CHUNKS_HEADER, chunks.len().to_string().as_str());
            if let Some(kind) = kind {
                headers.insert(KIND_HEADER, kind.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(
                    snapshot_subject(&hash, index),
                    headers,
                    Bytes::copy_from_slice(chunk),
                )
                .await
                .map_err(|e| StoreError::unavailable("snapshot put", e))?;
            ack.await
                .map_err(|e| StoreError::unavailable("snapshot put ack", e))?;
        }
        Ok(())
    }

    async fn chunk(
        &self,
        hash: SnapshotHash,
        index: usize,
    ) -> Result<jetstream::message::StreamMessage, StoreError> {
        self.snapshots
            .direct_get_last_for_subject(snapshot_subject(&hash, index))
            .await
            .map_err(|e| {
                if is_not_found(&e.kind()) {
                    StoreError::new(
                        StoreErrorKind::NotFound,
                        format!("no snapshot {hash} (chunk {index})"),
                    )
                } else {
                    StoreError::unavailable("snapshot get", e)
                }
            })
    }

    /// Fetches the snapshot named `hash` and checks that its bytes are the ones the hash names.
    pub async fn fetch(&self, hash: SnapshotHash) -> Result<Bytes, StoreError> {
        let first = self.chunk(hash, 0).await?;
        let count = chunk_count(Some(&first.headers)).unwrap_or(1);
        let bytes = if count == 1 {
            first.payload
        } else {
            let rest: Vec<jetstream::message::StreamMessage> =
                futures::future::try_join_all((1..count).map(|i| self.chunk(hash, i))).await?;
            let mut all = BytesMut::with_capacity(first.payload.len() * count);
            all.extend_from_slice(&first.payload);
            for chunk in rest {
                all.extend_from_slice(&chunk.payload);
            }
            all.freeze()
        };
        if !hash.matches(&bytes) {
            return Err(StoreError::new(
                StoreErrorKind::HashMismatch,
                format!("stored bytes do not match hash {hash}"),
            ));
        }
        Ok(bytes)
    }

    /// Publishes a hash notice with the cycle's trace context in its headers, and waits for
    /// JetStream to have it, so that once this returns the notice is also what
    /// [`SnapshotStore::latest`] answers. Returns its notice-stream sequence.
    ///
    /// **Fenced:** the notice says which one it follows (`notice.follows`, 0 for the first of
    /// its kind), and the stream stores it only if that is still the kind's last notice
    /// (`Nats-Expected-Last-Subject-Sequence`); otherwise nothing is published and the error is
    /// [`StoreErrorKind::Fenced`]. So an actor whose lease lapsed during a slow cycle, while
    /// another instance took over and announced, cannot announce over it: the check and the
    /// publish are one step on the server. A notice with `follows: None` is not fenced (tools).
    pub async fn announce(
        &self,
        kind: Kind,
        notice: &HashNotice,
        trace: &crate::trace::TraceContext,
    ) -> Result<u64, StoreError> {
        let mut headers = HeaderMap::new();
        trace.inject(&mut headers);
        if let Some(follows) = notice.follows {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                follows.to_string().as_str(),
            );
        }
        let ack = self
            .js
            .publish_with_headers(hash_subject(kind), headers, notice.to_bytes().into())
            .await
            .map_err(|e| StoreError::unavailable("notice publish", e))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Err(StoreError::new(
                    StoreErrorKind::Fenced,
                    format!(
                        "a newer {kind} notice than {} was announced by another publisher",
                        notice.follows.unwrap_or(0)
                    ),
                ))
            }
            Err(e) => Err(StoreError::unavailable("notice ack", e)),
        }
    }

    /// Says that a poll found `kind`'s data unchanged: `notice` (the last announced hash, the
    /// poll's `as_of`) on the kind's still-current subject ([`current_subject`]), kept by the
    /// notice stream for the recorder. Not fenced: it changes nothing that is announced.
    pub async fn confirm(
        &self,
        kind: Kind,
        notice: &HashNotice,
        trace: &crate::trace::TraceContext,
    ) -> Result<u64, StoreError> {
        let mut headers = HeaderMap::new();
        trace.inject(&mut headers);
        let ack = self
            .js
            .publish_with_headers(current_subject(kind), headers, notice.to_bytes().into())
            .await
            .map_err(|e| StoreError::unavailable("still-current publish", e))?;
        ack.await
            .map(|ack| ack.sequence)
            .map_err(|e| StoreError::unavailable("still-current ack", e))
    }

    /// The last notice of `kind`, if any was ever published, with its sequence.
    pub async fn latest(&self, kind: Kind) -> Result<Option<Latest>, StoreError> {
        match self
            .notices
            .direct_get_last_for_subject(hash_subject(kind))
            .await
        {
            Ok(message) => Ok(Some(Latest {
                notice: HashNotice::decode(&message.payload)?,
                sequence: message.sequence,
            })),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(StoreError::unavailable("latest notice", e)),
        }
    }

    /// Stores `bytes` under `hash` *without* the check that they are the bytes the hash
    /// names: for tests of what a follower does with a forged snapshot.
    #[doc(hidden)]
    pub async fn put_forged(&self, hash: SnapshotHash, bytes: Bytes) -> Result<(), StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(CHUNKS_HEADER, "1");
        self.js
            .publish_with_headers(snapshot_subject(&hash, 0), headers, bytes)
            .await
            .map_err(|e| StoreError::unavailable("snapshot put", e))?
            .await
            .map_err(|e| StoreError::unavailable("snapshot put ack", e))?;
        Ok(())
    }

    /// What [`SnapshotStore::prune`] deletes before: `retention` ago, or earlier while the
    /// recorder has notices to catch up on (a second before the first it has not
    /// acknowledged), but never earlier than the record stream keeps notices: a snapshot
    /// whose notice is gone is needed by no one. With it, the snapshots the first pending
    /// notices name, spared whatever their age (a snapshot stored long before its notice:
    /// an announcement retried, or content announced before and again).
    async fn prune_cutoff(
        &self,
        retention: Duration,
    ) -> Result<(OffsetDateTime, Vec<SnapshotHash>), StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut cutoff = now - retention;
        let mut pending = Vec::new();
        if let Some(floor) = self.recorder_floor().await? {
            let since = floor.since - Duration::from_secs(1);
            cutoff = cutoff.min(if floor.kept.is_zero() {
                since
            } else {
                since.max(now - floor.kept)
            });
            pending = floor.pending;
        }
        Ok((cutoff, pending))
    }

    /// Deletes snapshots stored before the cutoff (`retention` ago, earlier for a recorder
    /// that is behind: see [`SnapshotStore::prune_cutoff`]), except those in `keep`. Returns
    /// how many went.
    pub async fn prune(
        &self,
        keep: &[SnapshotHash],
        retention: Duration,
    ) -> Result<usize, StoreError> {
        let (cutoff, pending) = self.prune_cutoff(retention).await?;
        let subjects: Vec<(String, usize)> = self
            .snapshots
            .info_with_subjects(format!("{SNAPSHOT_PREFIX}.*.0"))
            .await
            .map_err(|e| StoreError::unavailable("snapshot list", e))?
            .try_collect()
            .await
            .map_err(|e| StoreError::unavailable("snapshot list", e))?;
        let mut deleted = 0;
        for (subject, _) in subjects {
            let Some((hash, _)) = parse_snapshot_subject(&subject) else {
                continue;
            };
            if keep.contains(&hash) || pending.contains(&hash) {
                continue;
            }
            let first = match self.chunk(hash, 0).await {
                Ok(m) => m,
                Err(e) if e.kind() == StoreErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if first.time < cutoff {
                self.snapshots
                    .purge()
                    .filter(format!("{SNAPSHOT_PREFIX}.{hash}.>"))
                    .await
                    .map_err(|e| StoreError::unavailable("snapshot delete", e))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
