//! Durable consumption of hash notices: what the recorder reads, so that a recorder that was
//! away catches up on every notice it missed.
//!
//! **Shape.** One JetStream durable pull consumer ([`RECORDER_CONSUMER`]) on the record
//! stream ([`RECORD_STREAM`](crate::subjects::RECORD_STREAM), a mirror of the notice stream),
//! filtered to the kinds the recorder records, explicit acknowledgement. A notice is
//! acknowledged by the caller only once what it names is committed to the database
//! ([`Delivery::ack`], which waits for the server to confirm), so a crash between commit and
//! ack redelivers a notice whose effect is already there: the recorder's writes are
//! idempotent, which makes that harmless.
//!
//! **What the streams keep.** The record stream keeps every notice for the stream retention
//! ([`DEFAULT_STREAM_RETENTION`], the recorder's setting), and
//! the snapshot pruning of the actors spares every snapshot announced since the first notice
//! this consumer has not acknowledged, within that retention
//! ([`SnapshotStore::prune`]). A recorder away for less than the retention finds both.
//!
//! A new consumer starts at the last notice of each kind: a recorder's first run records
//! from now, not from whatever old notices the stream still has.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use topcoins_schemas::{HashNotice, Kind};

use crate::notices::{Rejected, decode_notice};
use crate::store::{SnapshotStore, StoreError};
use crate::subjects::{RECORDER_CONSUMER, current_subject, hash_subject};

/// How long the notice stream keeps notices unless the recorder says otherwise: a recorder
/// away for up to a day catches up without a gap.
pub const DEFAULT_STREAM_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Notices delivered and not yet acknowledged, at most. Small: the recorder applies one at a
/// time, and a notice waiting in a client buffer is a notice whose ack timer runs.
const MAX_ACK_PENDING: i64 = 64;

/// The recorder's durable queue of notices.
pub struct DurableNotices {
    messages: pull::Stream,
    /// Each subject consumed, with its kind and whether it is the still-current one.
    kinds: Vec<(String, Kind, bool)>,
}

/// One notice as the durable consumer delivers it; acknowledge it once its effect is stored.
pub struct Delivery {
    pub kind: Kind,
    pub notice: HashNotice,
    /// A still-current notice (a poll that confirmed the last announced data, see
    /// [`SnapshotStore::confirm`]) rather than a hash notice.
    pub current: bool,
    /// Its sequence in the record stream.
    pub sequence: u64,
    /// Times the server delivered it (1 the first time): above 1 after a crash or a lapsed
    /// ack timer.
    pub delivered: i64,
    message: jetstream::Message,
}

/// A delivered message that is not a usable notice: acknowledged away (terminated) here,
/// handed back for counting.
#[derive(Debug)]
pub struct Discarded(pub Rejected);

impl DurableNotices {
    /// Opens (creating on first use) the durable consumer on the notices of `kinds`, and the
    /// still-current notices of `confirmed`.
    /// `retention`: how long the record stream keeps notices. `ack_wait`: how long a delivered notice may stay unacknowledged before the server
    /// delivers it again (the recorder reports progress while it waits for a database that is
    /// down, see [`Delivery::in_progress`]).
    pub async fn open(
        store: &SnapshotStore,
        kinds: &[Kind],
        confirmed: &[Kind],
        retention: Duration,
        ack_wait: Duration,
    ) -> Result<Self, StoreError> {
        store.ensure_kinds(kinds).await?;
        store.ensure_kinds(confirmed).await?;
        let notices = store.record_stream(retention).await?;
        let consumed: Vec<(String, Kind, bool)> = kinds
            .iter()
            .map(|k| (hash_subject(*k), *k, false))
            .chain(confirmed.iter().map(|k| (current_subject(*k), *k, true)))
            .collect();
        let subjects: Vec<String> = consumed.iter().map(|(s, _, _)| s.clone()).collect();
        let config = pull::Config {
            durable_name: Some(RECORDER_CONSUMER.to_owned()),
            description: Some("topcoins recorder: notices not yet in the database".to_owned()),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_ack_pending: MAX_ACK_PENDING,
            filter_subjects: subjects.clone(),
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = match notices.consumer_info(RECORDER_CONSUMER).await
        {
            Ok(info)
                if info.config.filter_subjects == config.filter_subjects
                    && info.config.ack_wait == ack_wait =>
            {
                notices
                    .get_consumer(RECORDER_CONSUMER)
                    .await
                    .map_err(|e| StoreError::unavailable("recorder consumer", e))?
            }
            Ok(info) => {
                // Kinds or ack wait changed: update in place, keeping the position (the
                // deliver policy of an existing consumer cannot change, so keep its own).
                let config = pull::Config {
                    deliver_policy: info.config.deliver_policy,
                    ..config
                };
                notices
                    .update_consumer(config)
                    .await
                    .map_err(|e| StoreError::unavailable("recorder consumer update", e))?
            }
            Err(_) => {
                // A new consumer starts at the last notice of each kind in the record; the
                // mirror fills in the background, so wait until it has caught up with the
                // notice stream (else the consumer would start at whatever old notices the
                // mirror copied first).
                wait_for_mirror(&notices).await;
                notices
                    .get_or_create_consumer(RECORDER_CONSUMER, config)
                    .await
                    .map_err(|e| StoreError::unavailable("recorder consumer", e))?
            }
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(MAX_ACK_PENDING as usize / 2)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| StoreError::unavailable("recorder consumer stream", e))?;
        Ok(Self {
            messages,
            kinds: consumed,
        })
    }

    /// The next notice, in stream order; `Err` for a message that is not one (already
    /// terminated so it is not delivered again). `None` when the consumer is gone for good.
    /// Transient errors (NATS away, a missed heartbeat) are waited out here.
    pub async fn next(&mut self) -> Option<Result<Delivery, Discarded>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, "recorder consumer: waiting for NATS");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (sequence, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(_) => (0, 1),
            };
            let decoded = self
                .kinds
                .iter()
                .find(|(subject, _, _)| subject.as_str() == message.subject.as_str())
                .map(|(_, kind, current)| (*kind, *current))
                .ok_or_else(|| Rejected::UnknownSubject(message.subject.to_string()))
                .and_then(|(kind, current)| {
                    decode_notice(kind, &message.message).map(|r| (r, current))
                });
            return Some(match decoded {
                Ok((received, current)) => Ok(Delivery {
                    kind: received.kind,
                    notice: received.notice,
                    current,
                    sequence,
                    delivered,
                    message,
                }),
                Err(rejected) => {
                    let _ = message.ack_with(AckKind::Term).await;
                    Err(Discarded(rejected))
                }
            });
        }
    }
}

/// Waits (up to 10 s) until the record stream's mirror reports no lag.
async fn wait_for_mirror(record: &async_nats::jetstream::stream::Stream) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut record = record.clone();
    while tokio::time::Instant::now() < deadline {
        if let Ok(info) = record.info().await
            && info
                .mirror
                .as_ref()
                .is_some_and(|m| m.lag == 0 && m.active.is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("record stream still catching up with the notices after 10 s; consuming anyway");
}

impl Delivery {
    /// Acknowledges the notice and waits for the server to confirm, so that once this returns
    /// it is not delivered again.
    pub async fn ack(&self) -> Result<(), StoreError> {
        self.message
            .double_ack()
            .await
            .map_err(|e| StoreError::unavailable("notice ack", e))
    }

    /// Tells the server the notice is still being worked on (restarts its ack timer).
    pub async fn in_progress(&self) {
        let _ = self.message.ack_with(AckKind::Progress).await;
    }

    /// Gives up on the notice for good (what it names is gone): it is not delivered again.
    pub async fn discard(&self) {
        let _ = self.message.ack_with(AckKind::Term).await;
    }
}
