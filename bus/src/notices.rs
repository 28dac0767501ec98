//! Typed subscriptions: hash notices of any registered kind, per-coin price events, and the
//! snapshot bytes an actor stores (pushed to followers as they are written).
//!
//! Subscribers get values, not messages: the subject is mapped back to its kind (or symbol),
//! the payload decoded with the size limit of [`topcoins_schemas::notice`], and the trace
//! context read from the headers here and nowhere else. What does not decode is handed back
//! as a [`Rejected`] with a metric label, so a follower counts it and carries on.
//!
//! Announcing a notice is a store operation (it is fenced against the notice stream, see
//! [`crate::SnapshotStore::announce`]); publishing price events is here.

use std::collections::{HashMap, VecDeque};

use async_nats::{Client, Message, Subscriber};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::SelectAll;
use topcoins_schemas::{HashNotice, Kind, NoticeError, PriceEvent, SnapshotHash};

use crate::TraceContext;
use crate::subjects::{self, PRICE_ALL, SNAPSHOT_PREFIX, hash_subject, price_subject};

/// A notice as a follower receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: Kind,
    pub notice: HashNotice,
    /// The announcing cycle's trace, to continue in the follower's spans.
    pub trace: Option<TraceContext>,
}

/// A message on a followed subject that is not a usable notice or event.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("message on {0}, which names nothing this subscriber follows")]
    UnknownSubject(String),
    #[error("{error}")]
    Undecodable {
        /// The kind whose subject it came on (notices only).
        kind: Option<Kind>,
        error: NoticeError,
    },
    #[error("price event on the subject of {subject_symbol:?} names {event_symbol:?}")]
    SymbolMismatch {
        subject_symbol: String,
        event_symbol: String,
    },
}

impl Rejected {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::UnknownSubject(_) => "unknown_subject",
            Rejected::Undecodable { error, .. } => error.reason(),
            Rejected::SymbolMismatch { .. } => "symbol_mismatch",
        }
    }
}

/// The hash notices of some kinds, as they are announced.
pub struct Notices {
    subscriptions: SelectAll<Subscriber>,
    /// Each subscribed kind with its subject, to map a message back to its kind.
    subjects: Vec<(String, Kind)>,
}

/// Subscribes to the notices of `kinds` (core NATS: one small message per change).
pub async fn subscribe_notices(
    client: &Client,
    kinds: &[Kind],
) -> Result<Notices, async_nats::SubscribeError> {
    subscribe(client, kinds.iter().map(|k| (hash_subject(*k), *k))).await
}

/// Subscribes to every poll of `kinds`: their hash notices and their still-current notices
/// (see [`SnapshotStore::confirm`](crate::SnapshotStore::confirm)), both as [`Received`] —
/// the hash a poll found and when. For what keeps a sample per poll (the ranks).
pub async fn subscribe_polls(
    client: &Client,
    kinds: &[Kind],
) -> Result<Notices, async_nats::SubscribeError> {
    subscribe(
        client,
        kinds.iter().flat_map(|k| {
            crate::subjects::stream_subjects(*k)
                .into_iter()
                .map(move |s| (s, *k))
        }),
    )
    .await
}

async fn subscribe(
    client: &Client,
    subjects: impl Iterator<Item = (String, Kind)>,
) -> Result<Notices, async_nats::SubscribeError> {
    let mut subscriptions = SelectAll::new();
    let mut kinds = Vec::new();
    for (subject, kind) in subjects {
        subscriptions.push(client.subscribe(subject.clone()).await?);
        kinds.push((subject, kind));
    }
    Ok(Notices {
        subscriptions,
        subjects: kinds,
    })
}

impl Notices {
    /// The next notice; `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Result<Received, Rejected>> {
        let message = self.subscriptions.next().await?;
        Some(self.decode(&message))
    }

    fn decode(&self, message: &Message) -> Result<Received, Rejected> {
        let kind = self
            .subjects
            .iter()
            .find(|(subject, _)| subject.as_str() == message.subject.as_str())
            .map(|(_, kind)| *kind)
            .ok_or_else(|| Rejected::UnknownSubject(message.subject.to_string()))?;
        decode_notice(kind, message)
    }
}

pub(crate) fn decode_notice(kind: Kind, message: &Message) -> Result<Received, Rejected> {
    let notice = HashNotice::decode(&message.payload).map_err(|error| Rejected::Undecodable {
        kind: Some(kind),
        error,
    })?;
    Ok(Received {
        kind,
        notice,
        trace: TraceContext::extract(message.headers.as_ref()),
    })
}

/// Publishes a per-coin price event on its symbol's subject.
pub async fn publish_price(
    client: &Client,
    event: &PriceEvent,
) -> Result<(), async_nats::PublishError> {
    client
        .publish(price_subject(&event.symbol), event.to_bytes().into())
        .await
}

/// Every coin's price events.
pub struct PriceEvents {
    subscription: Subscriber,
}

pub async fn subscribe_prices(client: &Client) -> Result<PriceEvents, async_nats::SubscribeError> {
    Ok(PriceEvents {
        subscription: client.subscribe(PRICE_ALL).await?,
    })
}

impl PriceEvents {
    /// The next event, checked against the symbol its subject names.
    pub async fn next(&mut self) -> Option<Result<PriceEvent, Rejected>> {
        let message = self.subscription.next().await?;
        Some(decode_price(&message))
    }
}

fn decode_price(message: &Message) -> Result<PriceEvent, Rejected> {
    let subject_symbol = subjects::symbol_of_price_subject(message.subject.as_str())
        .map_err(|_| Rejected::UnknownSubject(message.subject.to_string()))?;
    let event = PriceEvent::decode(&message.payload)
        .map_err(|error| Rejected::Undecodable { kind: None, error })?;
    if event.symbol != subject_symbol {
        return Err(Rejected::SymbolMismatch {
            subject_symbol,
            event_symbol: event.symbol,
        });
    }
    Ok(event)
}

/// Every message on every topcoins subject, undecoded: for tools and tests that measure what
/// crosses the bus (snapshot bytes travel under a root of their own and are not included).
pub async fn watch_all(client: &Client) -> Result<Subscriber, async_nats::SubscribeError> {
    client.subscribe(subjects::ALL).await
}

/// The snapshot bytes actors store, as they store them. A JetStream publish is also delivered
/// to core subscribers of its subject, so a follower that listens here has a new snapshot's
/// bytes before its notice arrives (the actor stores, then announces) and need not fetch it:
/// one round trip and a server-side lookup fewer on every change. What arrives here is
/// unverified; the follower checks it against the hash its notice names.
pub struct PushedSnapshots {
    subscription: Subscriber,
    /// Chunks of snapshots not yet whole (chunk 0, written last, completes one).
    partial: HashMap<SnapshotHash, HashMap<usize, Bytes>>,
    /// Arrival order of `partial`'s entries, to bound it.
    order: VecDeque<SnapshotHash>,
}

/// Snapshots being assembled at once; more means a publisher that never finishes one.
const PARTIAL_KEPT: usize = 4;

pub async fn subscribe_snapshots(
    client: &Client,
) -> Result<PushedSnapshots, async_nats::SubscribeError> {
    Ok(PushedSnapshots {
        subscription: client.subscribe(format!("{SNAPSHOT_PREFIX}.>")).await?,
        partial: HashMap::new(),
        order: VecDeque::new(),
    })
}

/// A snapshot as it went by on its way into the store: unverified.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The hash it is stored under (what its bytes should hash to).
    pub hash: SnapshotHash,
    /// The kind its publisher named, if it named one ([`crate::SnapshotStore::put_kind`]).
    pub kind: Option<String>,
    pub bytes: Bytes,
}

impl PushedSnapshots {
    /// The next whole snapshot that went by. Chunks that do not fit together are dropped
    /// here; `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Pushed> {
        loop {
            let message = self.subscription.next().await?;
            if let Some(whole) = self.take(message) {
                return Some(whole);
            }
        }
    }

    fn take(&mut self, message: Message) -> Option<Pushed> {
        let (hash, index) = crate::store::parse_snapshot_subject(message.subject.as_str())?;
        if index > 0 {
            if !self.partial.contains_key(&hash) {
                if self.order.len() >= PARTIAL_KEPT
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.partial.remove(&oldest);
                }
                self.order.push_back(hash);
            }
            self.partial
                .entry(hash)
                .or_default()
                .insert(index, message.payload);
            return None;
        }
        let count = crate::store::chunk_count(message.headers.as_ref())?;
        let kind = message
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::store::KIND_HEADER))
            .map(|v| v.as_str().to_owned());
        let mut rest = self.partial.remove(&hash).unwrap_or_default();
        self.order.retain(|h| *h != hash);
        let bytes = if count == 1 {
            message.payload
        } else {
            let mut all = BytesMut::with_capacity(message.payload.len() * count);
            all.extend_from_slice(&message.payload);
            for index in 1..count {
                all.extend_from_slice(&rest.remove(&index)?);
            }
            all.freeze()
        };
        Some(Pushed { hash, kind, bytes })
    }
}
