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
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated.
    pub url: String,
    /// Client name shown by the server (`topcoins-api`, …).
    pub name: String,
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
                    Event::Disconnected | Event::Closed => {
                        flag.store(false, Ordering::Relaxed);
                        tracing::warn!(client = %name, %event, "nats connection lost");
                    }
                    other => tracing::warn!(client = %name, event = %other, "nats event"),
                }
            }
        });
    let client = options.connect(config.url.as_str()).await?;
    Ok((
        client,
        Link {
            up,
            connects: connects_rx,
        },
    ))
}
