//! A private NATS server for the tests and the benchmark (bus mode): `nats-server` (the Debian
//! package `nats-server`) on a free loopback port, with its monitoring endpoint on a second one,
//! under a [`crate::watchdog`] like the private PostgreSQL, so it stops when this process exits,
//! however it exits. Core NATS only: no JetStream, no files but its log.

use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::watchdog::{self, Watchdog};

/// Longest wait for the server to accept connections after a start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's log, in its directory.
const LOG: &str = "nats-server.log";

/// Why the server could not be started or controlled.
#[derive(Debug)]
pub struct NatsError(String);

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NatsError {}

impl From<String> for NatsError {
    fn from(message: String) -> Self {
        NatsError(message)
    }
}

/// A running private NATS server. Dropping it stops the server and removes its directory; so
/// does the end of this process, however it ends.
#[derive(Debug)]
pub struct NatsServer {
    /// The temporary directory: the log, and whatever files the caller put there.
    dir: PathBuf,
    /// The client port on 127.0.0.1.
    port: u16,
    /// The HTTP monitoring port on 127.0.0.1 (`/varz`, `/subsz`, `/connz`).
    monitor_port: u16,
    /// The watchdog the server runs under; commands go through the lock.
    watchdog: Mutex<Watchdog>,
}

impl NatsServer {
    /// Starts a server that anyone on loopback may use, without TLS.
    pub fn start() -> Result<NatsServer, NatsError> {
        NatsServer::start_with(|_| Ok(Vec::new()))
    }

    /// Starts a server with more arguments: `extra` gets the server's private directory, may
    /// write files there (certificates, say) and returns the arguments (`--tls …`, `--auth …`).
    pub fn start_with(
        extra: impl FnOnce(&Path) -> Result<Vec<String>, String>,
    ) -> Result<NatsServer, NatsError> {
        let program = find_program()?;
        let dir = watchdog::private_dir("nats")?;
        let monitor_port = watchdog::free_port()?;
        let mut server = vec![
            program.display().to_string(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-m".to_owned(),
            monitor_port.to_string(),
        ];
        match extra(&dir) {
            Ok(extra) => server.extend(extra),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(NatsError(error));
            }
        }
        // From here on, the watchdog removes the directory whatever happens.
        let watchdog = Watchdog::spawn("NATS", &dir, LOG, &server)?;
        let mut nats = NatsServer {
            dir,
            port: 0,
            monitor_port,
            watchdog: Mutex::new(watchdog),
        };
        nats.port = watchdog::on_free_port(|port| nats.start_on(port))?;
        Ok(nats)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL clients connect to (`nats://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The address of the HTTP monitoring endpoint (`/varz`, `/subsz`, `/connz`).
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// The server's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the running server, if it runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.lock().server_pid()
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&self) -> Result<(), NatsError> {
        let mut watchdog = self.lock();
        if let Some(pid) = watchdog.server_pid() {
            let pid = libc::pid_t::try_from(pid).map_err(|e| NatsError(e.to_string()))?;
            // SAFETY: kill has no memory preconditions; the pid is the watchdog's child, which
            // it has not reaped yet, so it names no other process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        Ok(watchdog.stop()?)
    }

    /// Starts the server again after [`NatsServer::kill`], on the same port.
    pub fn restart(&self) -> Result<(), NatsError> {
        self.start_on(self.port)
    }

    fn start_on(&self, port: u16) -> Result<(), NatsError> {
        self.lock()
            .start(port, START_TIMEOUT, |_| greets(port))
            .map_err(|error| {
                let log = watchdog::tail(&self.dir.join(LOG), 20);
                NatsError(format!("{error}; its log says:\n{log}"))
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watchdog> {
        // The watchdog's state stays valid even if a holder panicked mid-command.
        self.watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.watchdog
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .close();
    }
}

/// Whether a NATS server on `port` greets a new connection with its `INFO` line.
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut greeting = [0u8; 5];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO "
}

/// `nats-server` on `PATH`, else where Debian puts it.
fn find_program() -> Result<PathBuf, NatsError> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|program| program.is_file())
        .ok_or_else(|| {
            NatsError(
                "nats-server was found neither on PATH nor in /usr/sbin: install it \
                 (Debian/Ubuntu: apt-get install nats-server)"
                    .to_owned(),
            )
        })
}
