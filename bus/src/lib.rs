//! Everything topcoins does with NATS. Services never write a subject string or touch
//! JetStream themselves; they go through this crate.
//!
//! - [`subjects`]: every subject name, and the rule that turns a coin symbol into a subject
//!   token ([`subjects::encode_symbol`]).
//! - [`connect`]: connection options shared by every service, and a cheap view of whether the
//!   connection is up ([`connect::Link`]).
//! - [`store`]: the snapshot store — snapshots in a JetStream stream, one subject per blake3
//!   hash, read by direct get; and hash notices kept in a second stream, so the latest one of
//!   each kind can be read back by a fresh node or a restarted actor, and announcing is
//!   fenced against it.
//! - [`notices`]: typed subscriptions — hash notices of any kind in [`subjects::KINDS`]
//!   (yielding kind, notice and trace context), price events, and the snapshot bytes actors
//!   store, pushed to followers as they are written.
//! - [`durable`]: the recorder's durable consumer of notices, acknowledged after the
//!   database commit, and what the streams keep for it.
//! - [`lease`]: which of several instances of an actor polls.
//! - [`server`]: starts a private `nats-server` process for `topcoins up` (tests use
//!   `topcoins-testkit`).
//! - [`trace`]: the W3C trace context carried in notice headers.

pub mod connect;
pub mod durable;
pub mod lease;
pub mod notices;
pub mod server;
pub mod store;
pub mod subjects;
pub mod trace;
pub mod tracked;

pub use connect::{Link, NatsAuth, NatsConfig, close, connect};
pub use durable::{DEFAULT_STREAM_RETENTION, Delivery, Discarded, DurableNotices};
pub use lease::Lease;
pub use notices::{
    Notices, PriceEvents, Pushed, PushedSnapshots, Received, Rejected, publish_price,
    subscribe_notices, subscribe_polls, subscribe_prices, subscribe_snapshots, watch_all,
};
pub use server::{LocalServer, ServerError};
pub use store::{Floor, Latest, SnapshotStore, StoreError, StoreErrorKind};
pub use trace::TraceContext;
pub use tracked::{TRACKED_BUCKET, Tracked};
