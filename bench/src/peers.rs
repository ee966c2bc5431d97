//! The systems compared, side by side on the same scenario: taskstream (push hub), taskstream
//! with notifications off and a 500 ms poll (the original design's latency), and nginx with
//! nchan. Each run gets a fresh server process, so its peak RSS and CPU time are its own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HOST;

use crate::client;
use crate::metrics::ServerCounters;
use crate::nchan::{Nginx, NginxSetup};
use crate::process::terminate;
use crate::session::Session;

/// Longest the server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of the server's stderr kept for error messages.
const LOG_LINES: usize = 20;

/// One of the systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// taskstream as configured by default: LISTEN/NOTIFY push hub.
    Taskstream,
    /// taskstream with `--notify false --poll-interval 500ms`.
    TaskstreamPoll,
    /// nginx + nchan, one worker; the writer publishes every committed event to it.
    #[value(name = "nginx-nchan")]
    Nchan,
    /// A taskstream that was already running (`--target-url`).
    #[value(skip)]
    Target,
}

impl PeerKind {
    /// Every peer, in table order.
    pub const ALL: [PeerKind; 3] = [
        PeerKind::Taskstream,
        PeerKind::TaskstreamPoll,
        PeerKind::Nchan,
    ];

    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Taskstream => "taskstream",
            PeerKind::TaskstreamPoll => "taskstream-poll",
            PeerKind::Nchan => "nginx-nchan",
            PeerKind::Target => "taskstream-target",
        }
    }
}

/// How the peers are started.
#[derive(Debug)]
pub struct PeerSetup {
    /// The taskstream binary.
    pub server_bin: PathBuf,
    /// nginx with nchan, or why it cannot run.
    pub nginx: Result<NginxSetup, String>,
    /// Keep-alive (taskstream) and ping (nchan) interval, seconds.
    pub keepalive_seconds: u64,
    /// The open-file limit the servers run with.
    pub files: u64,
    /// A server that is already running (`--target-url`), and its pid if given.
    pub target: Option<(SocketAddr, Option<u32>)>,
}

/// A peer serving one run.
#[derive(Debug)]
pub enum RunningPeer {
    /// A taskstream process.
    Taskstream {
        /// The process.
        child: Child,
        /// Where it listens.
        addr: SocketAddr,
        /// The end of its stderr.
        log: ServerLog,
    },
    /// A private nginx.
    Nchan(Nginx),
    /// A taskstream this benchmark did not start (and does not stop).
    Target {
        /// Where it listens.
        addr: SocketAddr,
        /// Its pid, if given.
        pid: Option<u32>,
    },
}

impl PeerSetup {
    /// Starts `kind` serving `database_url`.
    pub fn start(&self, kind: PeerKind, database_url: &str) -> Result<RunningPeer, String> {
        let keepalive = format!("{}s", self.keepalive_seconds);
        match kind {
            PeerKind::Taskstream => {
                start_taskstream(&self.server_bin, database_url, &["--keepalive", &keepalive])
            }
            PeerKind::TaskstreamPoll => start_taskstream(
                &self.server_bin,
                database_url,
                &[
                    "--keepalive",
                    &keepalive,
                    "--notify",
                    "false",
                    "--poll-interval",
                    "500ms",
                ],
            ),
            PeerKind::Nchan => {
                let setup = self.nginx.as_ref().map_err(Clone::clone)?;
                Nginx::start(setup, self.keepalive_seconds, self.files).map(RunningPeer::Nchan)
            }
            PeerKind::Target => match self.target {
                Some((addr, pid)) => Ok(RunningPeer::Target { addr, pid }),
                None => Err("no --target-url was given".to_owned()),
            },
        }
    }
}

/// The end of a server's stderr, kept for error messages.
pub type ServerLog = Arc<Mutex<Vec<String>>>;

/// Starts a taskstream process on `listen` (`127.0.0.1:0` for any free port) and waits for
/// the address it prints; the soak and the scaling runs start theirs with this too.
pub fn spawn_taskstream(
    bin: &Path,
    database_url: &str,
    listen: &str,
    args: &[&str],
) -> Result<(Child, SocketAddr, ServerLog), String> {
    let mut child = Command::new(bin)
        .args(["--listen", listen, "--log", "warn"])
        // Room for every scenario's streams (10,000 at most) and the HTTP/2 idle run's
        // connections beside them, as issue 18 runs it.
        .args(["--max-streams", "20000"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    let stderr = child.stderr.take().expect("stderr was piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("taskstream: listening on http://") {
                let _ = addr_tx.send(addr.trim().to_owned());
            }
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == LOG_LINES {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match addr_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(addr) => {
                let addr = addr
                    .parse()
                    .map_err(|e| format!("the server printed address {addr:?}: {e}"))?;
                return Ok((child, addr, log));
            }
            Err(mpsc::RecvTimeoutError::Timeout)
                if Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) => {}
            Err(_) => {
                terminate(&mut child, STOP_TIMEOUT);
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).join(" | ");
                return Err(format!("taskstream did not start: {log}"));
            }
        }
    }
}

fn start_taskstream(bin: &Path, database_url: &str, args: &[&str]) -> Result<RunningPeer, String> {
    let (child, addr, log) = spawn_taskstream(bin, database_url, "127.0.0.1:0", args)?;
    Ok(RunningPeer::Taskstream { child, addr, log })
}

impl RunningPeer {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        match self {
            RunningPeer::Taskstream { addr, .. } | RunningPeer::Target { addr, .. } => *addr,
            RunningPeer::Nchan(nginx) => nginx.addr(),
        }
    }

    /// The request path of a session's stream.
    pub fn stream_path(&self, session: &Session) -> String {
        match self {
            RunningPeer::Taskstream { .. } | RunningPeer::Target { .. } => {
                format!("/tasks/{}/events/stream", session.task)
            }
            RunningPeer::Nchan(_) => format!("/sub/{}", session.task),
        }
    }

    /// Where the writer publishes, for a peer that is not fed by PostgreSQL.
    pub fn publisher(&self) -> Option<SocketAddr> {
        match self {
            RunningPeer::Taskstream { .. } | RunningPeer::Target { .. } => None,
            RunningPeer::Nchan(nginx) => Some(nginx.addr()),
        }
    }

    /// The server's processes (for CPU and memory).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            RunningPeer::Taskstream { child, .. } => vec![child.id()],
            RunningPeer::Nchan(nginx) => nginx.pids(),
            RunningPeer::Target { pid, .. } => pid.iter().copied().collect(),
        }
    }

    /// The server's own counters, for a peer that has them.
    pub async fn counters(&self) -> Option<ServerCounters> {
        match self {
            RunningPeer::Taskstream { addr, .. } | RunningPeer::Target { addr, .. } => {
                let text = get(*addr, "/metrics").await.ok()?;
                Some(ServerCounters::parse(&text))
            }
            RunningPeer::Nchan(_) => None,
        }
    }

    /// Whether the process is still running (and its last words if not).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self {
            RunningPeer::Taskstream { child, log, .. } => match child.try_wait() {
                Ok(None) => Ok(()),
                _ => Err(format!(
                    "taskstream exited: {}",
                    log.lock().unwrap_or_else(|p| p.into_inner()).join(" | ")
                )),
            },
            RunningPeer::Nchan(_) | RunningPeer::Target { .. } => Ok(()),
        }
    }

    /// Stops the server.
    pub fn stop(self) {
        match self {
            RunningPeer::Taskstream { mut child, .. } => terminate(&mut child, STOP_TIMEOUT),
            RunningPeer::Nchan(mut nginx) => nginx.stop(),
            RunningPeer::Target { .. } => {}
        }
    }
}

/// A one-shot GET over its own connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut sender = client::sender(addr).await?;
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| format!("GET {path}: {e}"))
}
