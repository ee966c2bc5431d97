//! A private PostgreSQL cluster: for `cargo run` without `DATABASE_URL`, for every test binary,
//! and for the benchmark.
//!
//! The cluster lives in a temporary directory (data, socket directory, log) and listens on its
//! Unix socket only, in that directory, which only its owner can enter: no TCP port, so no
//! other local user can reach it (its authentication is `trust`, so reaching it would be
//! enough). `postgres` runs in the foreground under a [`crate::watchdog`], which
//! stops it and removes the directory when this process exits, however it exits (`pg_ctl` would
//! daemonize the server out of reach).
//!
//! PostgreSQL refuses to run as root; as root, `initdb` and `postgres` run as the `postgres`
//! system user through `setpriv` (which execs, so the watchdog's child is `postgres` itself).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::watchdog::{self, Watchdog};

/// The superuser of the cluster (trust authentication, on the private Unix socket only).
pub const SUPERUSER: &str = "postgres";

/// The port, which only names the socket file (`.s.PGSQL.5432`): the socket directory is the
/// cluster's own, so no other server can be using it.
const PORT: u16 = 5432;

/// Longest wait for the server to accept connections after a start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's log, in the cluster's directory.
const LOG: &str = "postgres.log";

/// Why the cluster could not be started or controlled.
#[derive(Debug)]
pub struct ClusterError(String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

fn fail(message: impl Into<String>) -> ClusterError {
    ClusterError(message.into())
}

impl From<String> for ClusterError {
    fn from(message: String) -> Self {
        ClusterError(message)
    }
}

/// A running private cluster. Dropping it stops the server and removes its directory; so does
/// the end of this process, however it ends.
#[derive(Debug)]
pub struct Cluster {
    /// The temporary directory: `data/`, `socket/`, `postgres.log`.
    dir: PathBuf,
    /// The watchdog and the pipes to it.
    watchdog: Mutex<Watchdog>,
}

impl Cluster {
    /// Creates and starts a new cluster.
    pub fn start() -> Result<Cluster, ClusterError> {
        let bin = find_bin_dir()?;
        let owner = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = create_private_dir(owner)?;
        let data = dir.join("data");
        let socket = dir.join("socket");
        fs::create_dir(&socket)
            .map_err(|e| fail(format!("cannot create {}: {e}", socket.display())))?;
        chown(&socket, owner)?;

        let mut postgres = as_owner(owner);
        postgres.push(bin.join("postgres").display().to_string());
        postgres.extend(
            [
                "-D",
                &data.display().to_string(),
                "-k",
                &socket.display().to_string(),
                "-c",
                "listen_addresses=",
                "-c",
                "max_connections=300",
                // A throwaway cluster: durability buys nothing and costs a lot.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
            .map(str::to_owned),
        );
        let watchdog = Watchdog::spawn("PostgreSQL", &dir, LOG, &postgres)?;
        // From here on, the watchdog removes the directory whatever happens.
        let cluster = Cluster {
            dir,
            watchdog: Mutex::new(watchdog),
        };
        initdb(&bin, &data, owner)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The port that names the server's socket file in [`Cluster::socket_dir`].
    pub fn port(&self) -> u16 {
        PORT
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// The URL of database `database` on this cluster (its socket directory, percent-encoded,
    /// as the host).
    pub fn url(&self, database: &str) -> String {
        let socket = self.socket_dir().to_string_lossy().into_owned();
        let host =
            percent_encoding::utf8_percent_encode(&socket, percent_encoding::NON_ALPHANUMERIC);
        format!("postgres://{SUPERUSER}@{host}:{PORT}/{database}")
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the running `postgres`, if it runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.lock().server_pid()
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping the data.
    pub fn stop_server(&self) -> Result<(), ClusterError> {
        Ok(self.lock().stop()?)
    }

    /// Starts the server (again, after [`Cluster::stop_server`]).
    pub fn start_server(&self) -> Result<(), ClusterError> {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        self.lock()
            .start(PORT, START_TIMEOUT, |pid| is_ready(&pid_file, pid))
            .map_err(|error| fail(format!("{error}; its log says:\n{}", self.log_tail())))
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        watchdog::tail(&self.dir.join(LOG), 20)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watchdog> {
        // The watchdog's state stays valid even if a holder panicked mid-command: at worst a
        // reply is left unread, and the next command fails with a clear message.
        self.watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.watchdog
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .close(); // end-of-file: stop the server, remove the directory
    }
}

/// Whether `postmaster.pid` belongs to `pid` and says the server accepts connections (its
/// eighth line is the status since PostgreSQL 10).
fn is_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid)
        && lines.get(7).is_some_and(|status| status.trim() == "ready")
}

/// The directory holding `initdb` and `postgres`: the first `PATH` entry with both, else the
/// newest `/usr/lib/postgresql/<version>/bin` (stock Debian has them only there).
fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        fail(
            "PostgreSQL's server programs (initdb, postgres) were found neither on PATH nor \
             under /usr/lib/postgresql/*/bin: install the `postgresql` package \
             (Debian/Ubuntu: apt-get install postgresql), or set DATABASE_URL",
        )
    })
}

fn initdb(bin: &Path, data: &Path, owner: Option<(u32, u32)>) -> Result<(), ClusterError> {
    let mut command = as_owner(owner);
    command.push(bin.join("initdb").display().to_string());
    let output = Command::new(&command[0])
        .args(&command[1..])
        .args(["-D", &data.display().to_string()])
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run initdb: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The command prefix that runs a program as `owner` (nothing when not root).
fn as_owner(owner: Option<(u32, u32)>) -> Vec<String> {
    match owner {
        Some((uid, gid)) => vec![
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ],
        None => Vec::new(),
    }
}

fn create_private_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, ClusterError> {
    let dir = watchdog::private_dir("pg")?;
    chown(&dir, owner)?;
    Ok(dir)
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), ClusterError> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| fail(format!("cannot hand {} to postgres: {e}", path.display()))),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Uid and gid of the `postgres` system user (from /etc/passwd).
fn postgres_user() -> Result<(u32, u32), ClusterError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() != Some(&"postgres") {
                return None;
            }
            Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
        })
        .ok_or_else(|| {
            fail(
                "running as root, but there is no `postgres` system user to run PostgreSQL as \
                 (PostgreSQL refuses root): install the `postgresql` package, which creates it",
            )
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A `postmaster.pid` as PostgreSQL writes it: pid first, status on the eighth line.
    fn pid_file(pid: u32, status: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ts-pid-{}-{n}", std::process::id()));
        let text = format!("{pid}\n/data\n1\n5432\n/tmp\n127.0.0.1\n  1  2\n{status}\n");
        fs::write(&path, text).expect("write the pid file");
        path
    }

    #[test]
    fn readiness_is_read_from_the_servers_own_pid_file() {
        let ready = pid_file(42, "ready   ");
        assert!(is_ready(&ready, 42));
        assert!(!is_ready(&ready, 43), "another server's file");
        let starting = pid_file(42, "starting");
        assert!(!is_ready(&starting, 42));
        assert!(!is_ready(Path::new("/nonexistent/postmaster.pid"), 42));
        for path in [ready, starting] {
            let _ = fs::remove_file(path);
        }
    }

    #[test]
    fn programs_run_as_the_owner_only_when_one_is_given() {
        assert!(as_owner(None).is_empty());
        assert_eq!(
            as_owner(Some((105, 110))),
            [
                "setpriv",
                "--reuid=105",
                "--regid=110",
                "--clear-groups",
                "--"
            ]
        );
    }

    #[test]
    fn a_cluster_serves_on_its_socket_only_and_leaves_nothing_when_dropped() {
        let cluster = Cluster::start().expect("a private cluster");
        let dir = cluster.dir().to_owned();
        assert!(dir.join("data").is_dir());
        let socket = cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{}", cluster.port()));
        std::os::unix::net::UnixStream::connect(&socket).expect("PostgreSQL listens");
        let mode = fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "only the owner may reach the socket");
        let url: tokio_postgres::Config = cluster.url("db").parse().expect("a valid URL");
        assert_eq!(
            url.get_hosts(),
            [tokio_postgres::config::Host::Unix(cluster.socket_dir())]
        );
        let settings = fs::read_to_string(dir.join("data/postmaster.opts")).unwrap_or_default();
        assert!(settings.contains("listen_addresses="), "{settings}");
        drop(cluster);
        assert!(!dir.exists(), "the directory is removed with the cluster");
    }
}
