//! Test harnesses for topcoins: real servers, private to one test, started on ports the
//! operating system picks and stopped when the handle is dropped. Used only as a
//! dev-dependency; `topcoins up` has its own, smaller way to start a nats-server
//! (`topcoins_bus::LocalServer`).
//!
//! - [`nats`]: [`NatsServer`], a nats-server with JetStream in a temporary directory, which a
//!   test can stop, kill and restart on the same port and data.
//! - [`postgres`]: [`Postgres`], a PostgreSQL cluster made with `initdb` in a temporary
//!   directory, run by the `postgres` user when the tests run as root, reached on a private
//!   unix socket or a loopback port.
//!
//! Neither depends on a topcoins crate, so every crate of the workspace (`topcoins-bus`
//! included) can use it in its tests without compiling itself twice.

pub mod nats;
pub mod postgres;

use std::time::Duration;

pub use nats::NatsServer;
pub use postgres::Postgres;

/// Longest a server may take to start (or stop) before the harness gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The server's binaries are not installed; the message says how to get them.
    #[error("{what} not found; {hint}")]
    NotFound {
        what: &'static str,
        hint: &'static str,
    },
    #[error("{what} did not start: {detail}")]
    Start { what: &'static str, detail: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
