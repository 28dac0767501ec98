//! What a node holds of each kind of snapshot, for any kind registered with it.
//!
//! A kind is taken in by registering its [`Snapshot`] type ([`Slots::register`]); the
//! follower, the caches, the metrics labels and the order of notices then work for it with no
//! code that names it. Each [`Slot`] keeps the decoded snapshots it has seen by hash (a hash
//! seen before — prices often flip back — is never fetched or decoded again) and the one in
//! force, which it also publishes through an `ArcSwap` for whatever reads it on the request
//! side ([`Current`]).
//!
//! The caches use plain LRU eviction: under moka's default TinyLFU admission a brand-new key
//! — and every new snapshot is one — can be refused when the cache is full.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use moka::policy::EvictionPolicy;
use time::OffsetDateTime;
use topcoins_schemas::{HashNotice, Kind, Snapshot, SnapshotError, SnapshotHash};

/// Snapshots of each kind kept decoded in memory.
const SNAPSHOTS_KEPT: u64 = 8;

/// Where a notice stands in its kind's sequence of notices.
///
/// Notices are ordered by the notice stream's sequence, not by the publisher's clock (a new
/// leader whose clock is behind must not be ignored). A notice read back from the store has
/// its own sequence; a live one carries the sequence of the notice it follows, so it comes
/// after that one and before anything later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Read from the store: this is its sequence.
    Stored(u64),
    /// Received live: it follows the notice with this sequence.
    After(u64),
    /// A notice from a publisher that predates sequences: only its time orders it.
    Unknown(OffsetDateTime),
}

impl Position {
    pub fn of_live(notice: &HashNotice) -> Self {
        match notice.follows {
            Some(sequence) => Position::After(sequence),
            None => Position::Unknown(notice.as_of),
        }
    }

    /// Stored(s) sits at 2s, After(p) between p and p + 1: so a live notice that follows the
    /// stored one is newer, and a stored one at or past what a live one follows is too.
    fn key(self) -> Option<u64> {
        match self {
            Position::Stored(s) => Some(s.saturating_mul(2)),
            Position::After(p) => Some(p.saturating_mul(2).saturating_add(1)),
            Position::Unknown(_) => None,
        }
    }

    /// Whether a notice at `self` (as of `as_of`) is newer than the one held at `held`.
    pub fn is_after(
        self,
        as_of: OffsetDateTime,
        held: Position,
        held_as_of: OffsetDateTime,
    ) -> bool {
        match (self.key(), held.key()) {
            (Some(new), Some(old)) => new > old,
            _ => as_of >= held_as_of,
        }
    }
}

/// The snapshot of one kind in force, as the request side reads it.
pub struct Latest<S> {
    pub notice: HashNotice,
    pub snapshot: Arc<S>,
}

/// A handle on the snapshot of one kind in force; one `ArcSwap` load to read.
pub type Current<S> = Arc<ArcSwapOption<Latest<S>>>;

/// One kind's state, whatever its type (see [`Slot`]).
pub trait Held: Send + Sync {
    fn kind(&self) -> Kind;
    /// The notice in force and its position.
    fn current(&self) -> Option<(&HashNotice, Position)>;
    /// Makes the snapshot named by `notice` current if it is already decoded here.
    fn install_cached(&mut self, notice: HashNotice, position: Position) -> bool;
    /// Decodes `bytes` (already checked against `notice.hash`) and makes them current.
    fn install_bytes(
        &mut self,
        notice: HashNotice,
        position: Position,
        bytes: &[u8],
    ) -> Result<(), SnapshotError>;
    /// Decodes `bytes` (already checked against `hash`) into the cache, ahead of the notice
    /// that will make them current. Returns false if they were decoded already.
    fn preload(&mut self, hash: SnapshotHash, bytes: &[u8]) -> Result<bool, SnapshotError>;
    /// A better position for the notice in force (the same notice, read back from the store).
    fn reposition(&mut self, position: Position);
    fn as_any(&self) -> &dyn Any;
}

/// The state of a kind whose snapshots are `S`.
pub struct Slot<S: Snapshot> {
    decoded: moka::sync::Cache<SnapshotHash, Arc<S>>,
    current: Option<(HashNotice, Position, Arc<S>)>,
    published: Current<S>,
}

impl<S: Snapshot> Slot<S> {
    fn new() -> Self {
        Self {
            decoded: moka::sync::Cache::builder()
                .max_capacity(SNAPSHOTS_KEPT)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            current: None,
            published: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// The snapshot in force, with its notice.
    pub fn get(&self) -> Option<(&HashNotice, &Arc<S>)> {
        self.current.as_ref().map(|(n, _, s)| (n, s))
    }

    /// A snapshot decoded here, in force or not.
    pub fn decoded(&self, hash: SnapshotHash) -> Option<Arc<S>> {
        self.decoded.get(&hash)
    }

    fn set(&mut self, notice: HashNotice, position: Position, snapshot: Arc<S>) {
        self.published.store(Some(Arc::new(Latest {
            notice: notice.clone(),
            snapshot: snapshot.clone(),
        })));
        self.current = Some((notice, position, snapshot));
    }
}

impl<S: Snapshot> Held for Slot<S> {
    fn kind(&self) -> Kind {
        S::KIND
    }

    fn current(&self) -> Option<(&HashNotice, Position)> {
        self.current.as_ref().map(|(n, p, _)| (n, *p))
    }

    fn install_cached(&mut self, notice: HashNotice, position: Position) -> bool {
        match self.decoded.get(&notice.hash) {
            Some(snapshot) => {
                self.set(notice, position, snapshot);
                true
            }
            None => false,
        }
    }

    fn install_bytes(
        &mut self,
        notice: HashNotice,
        position: Position,
        bytes: &[u8],
    ) -> Result<(), SnapshotError> {
        let snapshot = Arc::new(S::decode(bytes)?);
        self.decoded.insert(notice.hash, snapshot.clone());
        self.set(notice, position, snapshot);
        Ok(())
    }

    fn preload(&mut self, hash: SnapshotHash, bytes: &[u8]) -> Result<bool, SnapshotError> {
        if self.decoded.contains_key(&hash) {
            return Ok(false);
        }
        self.decoded.insert(hash, Arc::new(S::decode(bytes)?));
        Ok(true)
    }

    fn reposition(&mut self, position: Position) {
        if let Some((_, held, _)) = &mut self.current {
            *held = position;
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Every kind a node takes in.
#[derive(Default)]
pub struct Slots {
    slots: HashMap<Kind, Box<dyn Held>>,
}

impl Slots {
    /// Takes in snapshots of type `S` from now on; the handle reads the one in force.
    pub fn register<S: Snapshot>(&mut self) -> Current<S> {
        let slot = Slot::<S>::new();
        let current = slot.published.clone();
        self.slots.insert(S::KIND, Box::new(slot));
        current
    }

    /// The registered kinds, in a fixed order.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self.slots.keys().copied().collect();
        kinds.sort();
        kinds
    }

    /// The registered kind called `name`.
    pub fn kind_named(&self, name: &str) -> Option<Kind> {
        self.slots.keys().copied().find(|k| k.as_str() == name)
    }

    pub fn held(&mut self, kind: Kind) -> Option<&mut (dyn Held + 'static)> {
        self.slots.get_mut(&kind).map(|b| b.as_mut())
    }

    pub fn current(&self, kind: Kind) -> Option<(&HashNotice, Position)> {
        self.slots.get(&kind)?.current()
    }

    /// The slot of `S`, if registered.
    pub fn slot<S: Snapshot>(&self) -> Option<&Slot<S>> {
        self.slots.get(&S::KIND)?.as_any().downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn live_and_stored_notices_order_by_sequence_not_clock() {
        let early = datetime!(2026-01-01 00:00 UTC);
        let late = datetime!(2026-01-02 00:00 UTC);
        // A live notice following the stored one is newer, even with an earlier clock.
        assert!(Position::After(5).is_after(early, Position::Stored(5), late));
        // One following an older notice is not.
        assert!(!Position::After(4).is_after(late, Position::Stored(5), early));
        // A stored read at or past what the live one follows is newer (it is that one or later).
        assert!(Position::Stored(6).is_after(early, Position::After(5), late));
        assert!(!Position::Stored(5).is_after(late, Position::After(5), early));
        // Live after live: by what they follow.
        assert!(Position::After(9).is_after(early, Position::After(8), late));
        assert!(!Position::After(8).is_after(late, Position::After(8), early));
        // Without sequences, the clock decides.
        assert!(Position::Unknown(late).is_after(late, Position::Stored(3), early));
        assert!(!Position::Unknown(early).is_after(early, Position::After(3), late));
    }
}
