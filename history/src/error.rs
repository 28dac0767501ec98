//! The crate's one error type.

/// What went wrong in the history store. Callers act on [`Error::Unavailable`] (the database
/// is down or unreachable: answer `503`, retry later) and on the input errors (`400`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown interval {0:?}: expected 1m, 5m, 15m, 1h, 4h or 1d")]
    UnknownInterval(String),
    #[error("invalid database url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    #[error("invalid range: from {from} is after to {to}")]
    InvalidRange { from: i64, to: i64 },
    /// The database could not be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Database(String),
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        version: i64,
        name: &'static str,
        reason: String,
    },
    /// The database holds a version of the schema newer than this build knows.
    #[error("database schema is at version {found}, newer than this build's {known}")]
    SchemaTooNew { found: i64, known: i64 },
    /// A candle a caller handed in that the store cannot take.
    #[error("invalid candle: {0}")]
    InvalidCandle(String),
    /// A row that this crate could not have written.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The SQLite worker thread is gone (it panicked, or the store was dropped).
    #[error("sqlite worker stopped")]
    WorkerStopped,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Error::Unavailable(e.to_string())
            }
            _ => Error::Database(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // A closed connection or an I/O error has no SQLSTATE: the server is away.
        if e.is_closed() || e.code().is_none() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Database(e.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Error::Unavailable(other.to_string()),
        }
    }
}
