//! Connecting to NATS the same way in every service.
//!
//! Services start even when NATS is not reachable yet (`retry_on_initial_connect`) and keep
//! reconnecting forever with a short, capped backoff: an API node must go on serving while the
//! bus is away and pick up again the moment it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

/// Longest wait between two reconnect attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// Where and as whom to connect.
#[derive(Clone, Default)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated.
    pub url: String,
    /// Client name shown by the server (`topcoins-api`, …).
    pub name: String,
    pub auth: NatsAuth,
    /// Replicas of the streams topcoins creates (1 for a single server, 3 in a cluster).
    pub stream_replicas: usize,
}

/// How to authenticate and secure the connection; every part optional.
#[derive(Clone, Default)]
pub struct NatsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An NKey seed (`SU…`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    pub creds_file: Option<std::path::PathBuf>,
    /// CA certificate(s) to trust, PEM; setting it requires TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key, PEM, for mutual TLS.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub tls_required: bool,
}

impl std::fmt::Debug for NatsConfig {
    // Never prints a secret: only which kinds of credentials are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.auth;
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("name", &self.name)
            .field("user", &a.user)
            .field("password", &a.password.as_ref().map(|_| "<set>"))
            .field("token", &a.token.as_ref().map(|_| "<set>"))
            .field("nkey_seed", &a.nkey_seed.as_ref().map(|_| "<set>"))
            .field("creds_file", &a.creds_file)
            .field("tls", &(a.tls_required || a.tls_ca.is_some()))
            .field("stream_replicas", &self.stream_replicas)
            .finish()
    }
}

impl NatsConfig {
    /// The server URLs with any `user:password@` replaced by `<redacted>@`, for logs.
    pub fn redacted_url(&self) -> String {
        topcoins_runtime::secret::redact_urls(&self.url)
    }
}

/// Longest a closing service waits for the server to take what it still has to send.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Drains `client` (pending publishes flushed, subscriptions ended) — but never waits more than
/// [`CLOSE_TIMEOUT`]: with the server gone, a drain would wait for a reconnect forever and a
/// Ctrl-C would never finish.
pub async fn close(client: &Client) {
    match tokio::time::timeout(CLOSE_TIMEOUT, client.drain()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "nats drain failed"),
        Err(_) => tracing::warn!("nats did not take the last messages in time; closing anyway"),
    }
}

/// Whether the connection is up right now, and a signal each time it (re)connects.
#[derive(Clone)]
pub struct Link {
    up: Arc<AtomicBool>,
    connects: watch::Receiver<u64>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A receiver that changes every time the client (re)connects — the moment to resync
    /// anything that may have been missed while away.
    pub fn connects(&self) -> watch::Receiver<u64> {
        self.connects.clone()
    }
}

async fn apply_auth(
    mut options: ConnectOptions,
    auth: &NatsAuth,
) -> Result<ConnectOptions, async_nats::ConnectError> {
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(path) = &auth.creds_file {
        options = options.credentials_file(path).await.map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e)
        })?;
    }
    if let Some(ca) = &auth.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if auth.tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// Connects (or starts connecting) and returns the client with its [`Link`].
pub async fn connect(config: &NatsConfig) -> Result<(Client, Link), async_nats::ConnectError> {
    let up = Arc::new(AtomicBool::new(false));
    let (connects_tx, connects_rx) = watch::channel(0u64);
    let connects_tx = Arc::new(connects_tx);
    let flag = up.clone();
    let name = config.name.clone();
    let options = ConnectOptions::new()
        .name(&config.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            MAX_RECONNECT_DELAY.min(Duration::from_millis(25 * attempts as u64))
        })
        .event_callback(move |event| {
            let flag = flag.clone();
            let connects_tx = connects_tx.clone();
            let name = name.clone();
            async move {
                match event {
                    Event::Connected => {
                        flag.store(true, Ordering::Relaxed);
                        connects_tx.send_modify(|n| *n += 1);
                        tracing::info!(client = %name, "nats connected");
                    }
                    Event::Disconnected => {
                        flag.store(false, Ordering::Relaxed);
                        tracing::warn!(client = %name, "nats connection lost; reconnecting");
                    }
                    // Both follow our own close at shutdown.
                    Event::Draining | Event::Closed => {
                        flag.store(false, Ordering::Relaxed);
                        tracing::info!(client = %name, %event, "nats connection closing");
                    }
                    other => tracing::warn!(client = %name, event = %other, "nats event"),
                }
            }
        });
    let options = apply_auth(options, &config.auth).await?;
    let client = options.connect(config.url.as_str()).await?;
    Ok((
        client,
        Link {
            up,
            connects: connects_rx,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_printed() {
        let config = NatsConfig {
            url: "nats://alice:s3cret@a:4222,tls://b:4222,bob:hunter2@c:4222".into(),
            name: "x".into(),
            auth: NatsAuth {
                user: Some("alice".into()),
                password: Some("s3cret-too".into()),
                token: Some("tok3n".into()),
                ..Default::default()
            },
            stream_replicas: 1,
        };
        assert_eq!(
            config.redacted_url(),
            "nats://<redacted>@a:4222,tls://b:4222,<redacted>@c:4222"
        );
        let printed = format!("{config:?}");
        for secret in ["s3cret", "hunter2", "tok3n"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
