//! Keeping a node current: hash notices in, snapshots fetched once, view swapped.
//!
//! Order matters at start: subscribe first, then read the latest notices from the store, so
//! a change announced in between is seen one way or the other. After every reconnect the
//! latest notices are read again — whatever was announced while the bus was away is picked up
//! at once, not at the next change. A fetch that fails for want of the store is retried
//! shortly; a snapshot that fails its hash check is not (it is counted, and the node keeps
//! serving what it has).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::{Client, Message};
use futures::StreamExt;
use topcoins_bus::subjects::{PRICES_HASH, RANKING_HASH};
use topcoins_bus::{Link, SnapshotStore};
use topcoins_schemas::{HashNotice, Kind};
use tracing::Instrument;

use crate::metrics::ApiMetrics;
use crate::node::{ApplyError, Node, View};

const RETRY_AFTER_FAILED_FETCH: Duration = Duration::from_millis(500);

fn kind_of(subject: &str) -> Option<Kind> {
    match subject {
        PRICES_HASH => Some(Kind::Prices),
        RANKING_HASH => Some(Kind::Ranking),
        _ => None,
    }
}

/// Follows the bus until `shutdown`.
pub async fn follow(
    client: Client,
    replicas: usize,
    link: Link,
    metrics: ApiMetrics,
    view: Arc<ArcSwapOption<View>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = Box::pin(shutdown);
    let subs = match (
        client.subscribe(PRICES_HASH).await,
        client.subscribe(RANKING_HASH).await,
    ) {
        (Ok(p), Ok(r)) => futures::stream::select(p, r),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot subscribe to hash notices");
            return;
        }
    };
    let mut subs = Box::pin(subs);
    let Some(store) = SnapshotStore::open_when_ready(&client, replicas, &mut shutdown).await else {
        return;
    };
    let mut node = Node::new(store, metrics.clone(), view);
    let mut connects = link.connects();
    connects.mark_unchanged();
    let mut retry: Option<Pin<Box<tokio::time::Sleep>>> = None;
    if !warm(&mut node).await {
        retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER_FAILED_FETCH)));
    }
    loop {
        let retry_due = async {
            match retry.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            message = subs.next() => {
                let Some(message) = message else { break };
                if !on_message(&mut node, &metrics, message).await && retry.is_none() {
                    retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER_FAILED_FETCH)));
                }
            }
            changed = connects.changed() => {
                if changed.is_err() { break }
                tracing::info!("reconnected; reading the latest notices");
                if !warm(&mut node).await {
                    retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER_FAILED_FETCH)));
                }
            }
            _ = retry_due => {
                retry = None;
                if !warm(&mut node).await {
                    retry = Some(Box::pin(tokio::time::sleep(RETRY_AFTER_FAILED_FETCH)));
                }
            }
        }
    }
    tracing::debug!("notice follower stopped");
}

/// Handles one bus message. Returns false when a retry is worth scheduling.
async fn on_message(node: &mut Node, metrics: &ApiMetrics, message: Message) -> bool {
    let Some(kind) = kind_of(message.subject.as_str()) else {
        metrics
            .notices_rejected
            .with_label_values(&["unknown_subject"])
            .inc();
        return true;
    };
    metrics
        .notices_received
        .with_label_values(&[kind.as_str()])
        .inc();
    let notice = match HashNotice::decode(&message.payload) {
        Ok(n) => n,
        Err(e) => {
            metrics
                .notices_rejected
                .with_label_values(&[e.reason()])
                .inc();
            tracing::warn!(kind = kind.as_str(), error = %e, "notice dropped");
            return true;
        }
    };
    // Continue the actor's trace: the same trace id in this node's spans for this change.
    let trace = message
        .headers
        .as_ref()
        .and_then(|h| h.get(topcoins_bus::trace::TRACEPARENT))
        .and_then(|v| topcoins_bus::TraceContext::parse(v.as_str()));
    let span = tracing::info_span!(
        "apply_notice",
        kind = kind.as_str(),
        trace_id = trace.map(|t| t.trace_id_hex()).unwrap_or_default()
    );
    apply(node, kind, notice).instrument(span).await
}

async fn apply(node: &mut Node, kind: Kind, notice: HashNotice) -> bool {
    let hash = notice.hash;
    match node.apply(kind, notice).await {
        Ok(changed) => {
            if changed {
                tracing::debug!(kind = kind.as_str(), %hash, "now serving new snapshot");
            }
            true
        }
        Err(e @ ApplyError::Fetch(_)) => {
            tracing::warn!(kind = kind.as_str(), %hash, error = %e, "snapshot not available; will retry");
            false
        }
        Err(e) => {
            tracing::error!(kind = kind.as_str(), %hash, error = %e, "snapshot rejected; serving the last good data");
            true
        }
    }
}

/// Brings the node up to the latest notices in the store. Returns false if a retry is due.
async fn warm(node: &mut Node) -> bool {
    let mut ok = true;
    for kind in Kind::ALL {
        match node.store().latest(kind).await {
            Ok(Some(notice)) => ok &= apply(node, kind, notice).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "latest notice unavailable");
                ok = false;
            }
        }
    }
    ok
}
