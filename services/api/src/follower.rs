//! Keeping a node current: hash notices in, snapshots found once, views swapped.
//!
//! Order matters at start: subscribe first (to the notices of every kind the node takes in,
//! and to the snapshot bytes actors store), then read the latest notices from the store, so a
//! change announced in between is seen one way or the other. After every reconnect the latest
//! notices are read again — whatever was announced while the bus was away is picked up at
//! once, not at the next change. A snapshot that cannot be had for want of the store is
//! retried shortly; one that fails its hash check is not (it is counted, and the node keeps
//! serving what it has).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::Client;
use topcoins_bus::{
    Link, Received, Rejected, SnapshotStore, subscribe_notices, subscribe_snapshots,
};
use topcoins_schemas::{HashNotice, Kind};
use tracing::Instrument;

use tokio::sync::watch;

use crate::merge::References;
use crate::metrics::ApiMetrics;
use crate::node::{ApplyError, Node};
use crate::slots::{Position, Slots};
use crate::view::View;

const RETRY_AFTER_FAILED_FETCH: Duration = Duration::from_millis(500);

/// Follows the bus until `shutdown`, taking in the kinds of `slots`, and the reference
/// prices for the 24 h change from `references` (a sender that is gone, as on a node
/// without a database, leaves them unknown).
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    client: Client,
    replicas: usize,
    link: Link,
    metrics: ApiMetrics,
    slots: Slots,
    view: Arc<ArcSwapOption<View>>,
    changed: Arc<tokio::sync::Notify>,
    mut references: watch::Receiver<Arc<References>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = Box::pin(shutdown);
    let kinds = slots.kinds();
    let (mut notices, mut pushed) = match (
        subscribe_notices(&client, &kinds).await,
        subscribe_snapshots(&client).await,
    ) {
        (Ok(n), Ok(p)) => (n, p),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot subscribe to hash notices");
            return;
        }
    };
    let Some(store) = SnapshotStore::open_when_ready(&client, replicas, &mut shutdown).await else {
        return;
    };
    if let Err(e) = store.ensure_kinds(&kinds).await {
        // Only a kind outside `topcoins_bus::subjects::KINDS` needs this; its warm-up reads
        // find nothing until it works, its live notices still arrive.
        tracing::warn!(error = %e, "notice stream does not keep every kind followed");
    }
    let mut node = Node::new(store, metrics.clone(), slots, view, changed);
    node.set_references(references.borrow_and_update().clone());
    let mut references_open = true;
    let mut connects = link.connects();
    connects.mark_unchanged();
    let mut retry: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let retry_soon = || Some(Box::pin(tokio::time::sleep(RETRY_AFTER_FAILED_FETCH)));
    if !warm(&mut node).await {
        retry = retry_soon();
    }
    loop {
        let retry_due = async {
            match retry.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Pushed bytes first: when a snapshot and its notice are both waiting, the notice
            // finds the bytes already here.
            biased;
            _ = &mut shutdown => break,
            snapshot = pushed.next() => {
                let Some(snapshot) = snapshot else { break };
                node.pushed(snapshot);
            }
            received = notices.next() => {
                let Some(received) = received else { break };
                if !on_notice(&mut node, &metrics, received).await && retry.is_none() {
                    retry = retry_soon();
                }
            }
            changed = references.changed(), if references_open => {
                match changed {
                    Ok(()) => {
                        let refs = references.borrow_and_update().clone();
                        if node.set_references(refs) {
                            tracing::debug!("reference prices changed; merged again");
                        }
                    }
                    Err(_) => references_open = false,
                }
            }
            changed = connects.changed() => {
                if changed.is_err() { break }
                tracing::info!("reconnected; reading the latest notices");
                if !warm(&mut node).await {
                    retry = retry_soon();
                }
            }
            _ = retry_due => {
                retry = None;
                if !warm(&mut node).await {
                    retry = retry_soon();
                }
            }
        }
    }
    tracing::debug!("notice follower stopped");
}

/// Handles one notice off the bus. Returns false when a retry is worth scheduling.
async fn on_notice(
    node: &mut Node,
    metrics: &ApiMetrics,
    received: Result<Received, Rejected>,
) -> bool {
    let received = match received {
        Ok(r) => r,
        Err(e) => {
            metrics
                .notices_rejected
                .with_label_values(&[e.reason()])
                .inc();
            tracing::warn!(error = %e, "notice dropped");
            return true;
        }
    };
    let kind = received.kind;
    metrics
        .notices_received
        .with_label_values(&[kind.as_str()])
        .inc();
    // Continue the actor's trace: the same trace id in this node's spans for this change.
    let span = tracing::info_span!(
        "apply_notice",
        kind = kind.as_str(),
        trace_id = received.trace.map(|t| t.trace_id_hex()).unwrap_or_default()
    );
    let position = Position::of_live(&received.notice);
    apply(node, kind, received.notice, position)
        .instrument(span)
        .await
}

async fn apply(node: &mut Node, kind: Kind, notice: HashNotice, position: Position) -> bool {
    let hash = notice.hash;
    match node.apply(kind, notice, position).await {
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
    for kind in node.kinds() {
        match node.store().latest(kind).await {
            Ok(Some(latest)) => {
                ok &= apply(node, kind, latest.notice, Position::Stored(latest.sequence)).await
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "latest notice unavailable");
                ok = false;
            }
        }
    }
    ok
}
