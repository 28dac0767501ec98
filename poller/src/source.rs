//! Where snapshots come from: the one thing a polling service writes itself.

use std::future::Future;

use topcoins_schemas::{HashNotice, Snapshot};
use topcoins_upstream::UpstreamError;

/// Where snapshots come from. A new one is built for each (re)start of the poller, so a
/// source may keep state (which provider is in force) that a restart should forget.
pub trait Source: Send + Sync + 'static {
    type Snapshot: Snapshot + Clone;

    /// Provider name, for metrics and logs.
    fn provider(&self) -> &'static str;

    /// Fetches and normalises one snapshot. The error names the provider that failed (a
    /// source may have several).
    fn fetch(&mut self) -> impl Future<Output = Result<Self::Snapshot, UpstreamError>> + Send;

    /// Called once a new snapshot has been stored and announced.
    /// Whether `current` shrank the universe so far from `previous` (same source) that the
    /// poller holds it back until it repeats (see the guard in `cycle`): by default, to less
    /// than half. A source that chooses what it asks for (a tracked set that users shrink)
    /// compares with what it asked instead.
    fn shrank(&self, previous: &Self::Snapshot, current: &Self::Snapshot) -> bool {
        current.len() * 2 < previous.len()
    }

    fn announced(
        &mut self,
        _previous: Option<&Self::Snapshot>,
        _current: &Self::Snapshot,
        _notice: &HashNotice,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}
