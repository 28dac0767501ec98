//! What the API node's integration tests share: a node running in the test's process, one
//! HTTP/1.1 request on a connection of its own, the response as read off the socket, and a
//! bounded wait.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus::Registry;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use topcoins_api::ApiConfig;
use topcoins_bus::NatsConfig;

/// Every wait of the shared helpers is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

/// A response as read off the socket: status, headers (names in lower case), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error.code` of a JSON error body.
    pub fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 GET on a connection of its own, read until the server closes it.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Answer> {
    request(addr, "GET", path, headers).await
}

/// One HTTP/1.1 request without a body on a connection of its own, read until the server
/// closes it.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer> {
    timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers")?;
        let head = std::str::from_utf8(&raw[..split])?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .context("no status line")?
            .parse()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        anyhow::Ok(Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    })
    .await?
}

/// An API node running in this process, on a port the OS gave it, with its own registry.
pub struct Node {
    pub addr: SocketAddr,
    pub registry: Registry,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<(), topcoins_api::ApiRunError>>,
}

impl Node {
    pub async fn start(nats_url: &str, config: ApiConfig) -> Result<Self> {
        let listener = timeout(WAIT, TcpListener::bind("127.0.0.1:0")).await??;
        let addr = listener.local_addr()?;
        let registry = Registry::new();
        let nats = NatsConfig {
            url: nats_url.to_owned(),
            name: "api".into(),
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(topcoins_api::run(
            config,
            nats,
            registry.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr,
            registry,
            stop,
            task,
        })
    }

    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        timeout(WAIT, self.task).await???;
        Ok(())
    }

    /// The sum of a counter's samples whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                let have: HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.iter().all(|(k, v)| have.get(k) == Some(v))
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        get(self.addr, path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<Answer> {
        get(self.addr, path, headers).await
    }
}

/// Retries `check` until it gives `Some`, for at most [`WAIT`].
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = timeout(WAIT, check()).await?? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
