//! The poll → hash → store → announce runtime that the price and ranking actors run on.
//!
//! A service gives it a [`Source`] (how to fetch and normalise one snapshot) and a
//! [`ServiceContext`]; [`serve`] does the rest until shutdown. Each cycle fetches a snapshot,
//! encodes it canonically and hashes it; only when the hash changed is the snapshot stored
//! under its hash and a notice announced, so an unchanged upstream costs the bus nothing.
//!
//! - [`source`]: the [`Source`] trait.
//! - `actor`: the ractor `Poller` actor (its arguments, state and message), which runs one
//!   cycle per interval, never two at once.
//! - `cycle`: what one cycle does, as named steps: lease, resume, fetch, guard, store,
//!   announce, prune.
//! - `supervisor`: restarts a poller that fails, with backoff; the policy is written down in
//!   its `handle_supervisor_evt`.
//! - [`service`]: [`serve`] (connect, open the store, take the lease, run until shutdown),
//!   [`run_poller`], [`lease_ttl`], [`ServiceContext`].
//! - [`metrics`]: [`PollerMetrics`], the poll-cycle metrics. The provider-side ones
//!   (requests, rejected bodies, credits…) are `topcoins_upstream::UpstreamMetrics`; both
//!   register into the same registry without sharing a name.
//! - [`error`]: [`RunError`], why a polling service could not run.

mod actor;
mod cycle;
pub mod error;
pub mod metrics;
pub mod service;
pub mod source;
mod supervisor;

pub use actor::SharedLease;
pub use cycle::SHRINK_CONFIRMATIONS;
pub use error::RunError;
pub use metrics::PollerMetrics;
pub use service::{ServiceContext, lease_ttl, run_poller, serve};
pub use source::Source;
