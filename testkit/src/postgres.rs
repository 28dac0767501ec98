//! A private PostgreSQL for one test: a cluster made with `initdb` in a temporary directory,
//! started with `pg_ctl`, stopped (and removed) on drop.
//!
//! - **Binaries:** `$PG_BINDIR` if set, else `pg_config --bindir`, else the directory of an
//!   `initdb` on `PATH`, else the newest `/usr/lib/postgresql/<version>/bin` (Debian keeps
//!   them off `PATH`). `scripts/test` installs Debian's `postgresql` when none is found.
//! - **User:** PostgreSQL refuses to run as root. When the tests run as root (CI here does),
//!   the directory is given to the `postgres` user and every PostgreSQL command runs as it.
//! - **Reaching it:** a unix socket in the cluster's own directory ([`Postgres::socket_url`]),
//!   which nothing else can take, and a loopback port ([`Postgres::url`]). PostgreSQL cannot
//!   pick a free port itself, so the operating system proposes one and a start that finds it
//!   taken after all is retried on another.
//! - **Speed over durability:** `fsync`, `synchronous_commit` and `full_page_writes` are off;
//!   a test's database does not outlive the test.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::{HarnessError, START_TIMEOUT};

const WHAT: &str = "PostgreSQL";
const HINT: &str = "install Debian's `postgresql` package (scripts/test does, as root), \
     or set PG_BINDIR to the directory holding initdb and pg_ctl";
/// The superuser `initdb` creates; it logs in without a password (`trust`), which is safe on
/// a socket in a private directory and a loopback port that live as long as one test.
pub const USER: &str = "postgres";
/// Starts tried on different proposed ports before giving up.
const PORT_TRIES: usize = 5;

/// A running PostgreSQL cluster; stopped when dropped, its files removed with it.
pub struct Postgres {
    bindir: PathBuf,
    /// The `postgres` user's uid and gid when we run as root.
    run_as: Option<(u32, u32)>,
    port: u16,
    running: bool,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Makes a cluster in a temporary directory and starts it, durability off (see the module
    /// docs).
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(false).await
    }

    /// As [`Postgres::start`], with PostgreSQL's durable defaults (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on): for benchmarks, whose figures should
    /// be those of a real deployment.
    pub async fn start_durable() -> Result<Self, HarnessError> {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> Result<Self, HarnessError> {
        let bindir = bindir()?;
        let run_as = run_as()?;
        let dir = tempfile::Builder::new().prefix("topcoins-pg-").tempdir()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut pg = Self {
            bindir,
            run_as,
            port: 0,
            running: false,
            dir,
        };
        std::fs::create_dir(pg.socket_dir())?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(pg.socket_dir(), Some(uid), Some(gid))?;
        }
        pg.initdb(durable).await?;
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            let port = propose_port()?;
            match pg.pg_ctl_start(port).await {
                Ok(()) => return Ok(pg),
                Err(detail) => last = detail,
            }
        }
        Err(start_error(format!(
            "{PORT_TRIES} tries; the last: {last}; log: {}",
            pg.log()
        )))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The same database through the unix socket:
    /// `postgres:///postgres?host=<socket dir>&port=<port>&user=postgres`.
    pub fn socket_url(&self) -> String {
        format!(
            "postgres:///postgres?host={}&port={}&user={USER}",
            self.socket_dir().display(),
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far, for error messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, the cluster is left
    /// consistent) and waits until it has.
    pub async fn stop(&mut self) {
        if !self.running {
            return;
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"]);
        let _ = tokio::time::timeout(START_TIMEOUT, stop.status()).await;
        self.running = false;
    }

    /// Starts the server again after [`Postgres::stop`], on the same port (a database that
    /// went away and came back, as clients see it).
    pub async fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.running {
            return Ok(());
        }
        let port = self.port;
        self.pg_ctl_start(port)
            .await
            .map_err(|detail| start_error(format!("{detail}; log: {}", self.log())))
    }

    /// A PostgreSQL command, run as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        if let Some((uid, gid)) = self.run_as {
            // Dropping from root: std also clears the supplementary groups.
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn initdb(&self, durable: bool) -> Result<(), HarnessError> {
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // Nothing here needs to survive a power cut.
            .arg("--no-sync");
        let out = tokio::time::timeout(START_TIMEOUT, initdb.output())
            .await
            .map_err(|_| start_error(format!("initdb took over {START_TIMEOUT:?}")))??;
        if !out.status.success() {
            return Err(start_error(format!(
                "initdb: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut settings = format!(
            "\n# topcoins-testkit\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n",
            self.socket_dir().display()
        );
        if !durable {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(&settings);
        std::fs::write(&conf, text)?;
        Ok(())
    }

    /// Starts the server on `port`; the error is what pg_ctl said (a port taken, say).
    async fn pg_ctl_start(&mut self, port: u16) -> Result<(), String> {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-o", &format!("-p {port}")])
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "start"]);
        let out = start.output().await.map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start on port {port}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.port = port;
        self.running = true;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: the files go next, nothing needs to be written out first.
            let mut stop = std::process::Command::new(self.bindir.join("pg_ctl"));
            stop.arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .current_dir(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::process::CommandExt::uid(&mut stop, uid);
                std::os::unix::process::CommandExt::gid(&mut stop, gid);
            }
            let _ = stop.status();
        }
    }
}

fn start_error(detail: String) -> HarnessError {
    HarnessError::Start { what: WHAT, detail }
}

fn not_found() -> HarnessError {
    HarnessError::NotFound {
        what: WHAT,
        hint: HINT,
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` (see the module docs).
pub fn bindir() -> Result<PathBuf, HarnessError> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(not_found())
        };
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Debian links some of them into PATH; the real directory has all of them.
            if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
                && let Some(real) = initdb.parent()
                && has_initdb(real)
            {
                return Ok(real.to_owned());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let dir = e.path().join("bin");
            has_initdb(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(not_found)
}

/// The `postgres` user's uid and gid if we are root (PostgreSQL will not run as root), else
/// `None`: the commands run as whoever we are.
fn run_as() -> Result<Option<(u32, u32)>, HarnessError> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&USER))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            start_error(format!(
                "running as root and there is no `{USER}` user to run PostgreSQL as \
                 (Debian's postgresql package creates it)"
            ))
        })
}

/// A loopback port the operating system has just handed out, so very likely free. (Taken
/// after all by the time the server binds it, the start fails and another is tried.)
fn propose_port() -> Result<u16, HarnessError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
