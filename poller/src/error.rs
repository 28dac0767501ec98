//! Why a polling service could not run. Everything that goes wrong *within* a cycle is an
//! outcome of that cycle (counted and logged), not an error: the service goes on.

/// Why a polling service could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nats: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("actor did not start: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("configuration: {0}")]
    Config(String),
}
