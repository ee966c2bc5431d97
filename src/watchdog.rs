//! A server program tied to this process's life: the private PostgreSQL ([`crate::embedded_pg`])
//! and NATS server ([`crate::embedded_nats`]) of `cargo run`, the tests and the benchmark.
//!
//! The server runs in the foreground as the child of a small `sh` watchdog that reads commands
//! from a pipe held by this process. When this process exits for any reason — a normal exit
//! (statics get no destructors), a panic, SIGKILL — the kernel closes the pipe, the watchdog sees
//! end-of-file, stops the server and removes its directory. (A daemonizing launcher would put
//! the server out of reach, and `PR_SET_PDEATHSIG` fires when the spawning *thread* exits, which
//! libtest does after every test.) The watchdog has its own process group, so a Ctrl-C in the
//! terminal reaches only this process, which then stops it cleanly.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Attempts at finding a free port (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 5;

/// The watchdog. Arguments: the directory to remove at the end, the name of the log file in it,
/// then the server's command (without `-p`, which both servers take for their port). Commands on
/// stdin: `start <port>` (answers `started <pid>`) and `stop` (answers `stopped`). On
/// end-of-file it stops the server and removes the directory.
const SCRIPT: &str = r#"
dir=$1; log=$2; shift 2
pid=
stop() { if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; fi; }
while IFS=' ' read -r cmd port; do
  case $cmd in
    start) "$@" -p "$port" </dev/null >>"$dir/$log" 2>&1 & pid=$!; echo "started $pid" ;;
    stop) stop; echo stopped ;;
  esac
done
stop
rm -rf "$dir"
"#;

/// A watchdog and the pipes to it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    /// The `sh` running the script, reaped by [`Watchdog::close`].
    child: Child,
    /// Closing this (by [`Watchdog::close`] or by process exit) stops everything.
    commands: Option<ChildStdin>,
    /// One line per command.
    replies: BufReader<ChildStdout>,
    /// Which server it runs, for messages.
    what: &'static str,
    /// The running server, `None` while stopped.
    server_pid: Option<u32>,
}

impl Watchdog {
    /// Starts a watchdog for `server` (a command and its arguments, without the port), which
    /// logs to `log` in `dir`. From here on, `dir` is removed whatever happens.
    pub(crate) fn spawn(
        what: &'static str,
        dir: &Path,
        log: &str,
        server: &[String],
    ) -> Result<Watchdog, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg(format!("taskstream-{what}-watchdog"))
            .arg(dir)
            .arg(log)
            .args(server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run sh for the {what} watchdog: {e}"))?;
        Ok(Watchdog {
            commands: child.stdin.take(),
            replies: BufReader::new(child.stdout.take().expect("stdout was piped")),
            child,
            what,
            server_pid: None,
        })
    }

    /// The running server's pid, if it runs.
    pub(crate) fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }

    /// Starts the server on `port` and waits until `ready(pid)` holds. If it exits first, or is
    /// not ready within `timeout`, it is stopped again and this fails.
    pub(crate) fn start(
        &mut self,
        port: u16,
        timeout: Duration,
        ready: impl Fn(u32) -> bool,
    ) -> Result<(), String> {
        self.command(&format!("start {port}"))?;
        let reply = self.reply()?;
        let pid: u32 = reply
            .strip_prefix("started ")
            .and_then(|pid| pid.trim().parse().ok())
            .ok_or_else(|| format!("unexpected watchdog reply {reply:?}"))?;
        self.server_pid = Some(pid);
        let deadline = Instant::now() + timeout;
        loop {
            if ready(pid) {
                return Ok(());
            }
            if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
                self.stop()?;
                return Err(format!("{} did not start on port {port}", self.what));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGINT, then waits for it to exit).
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        self.command("stop")?;
        let reply = self.reply()?;
        if reply != "stopped" {
            return Err(format!("watchdog answered {reply:?}, expected \"stopped\""));
        }
        self.server_pid = None;
        Ok(())
    }

    /// Ends the watchdog: it stops the server and removes the directory, and this waits for it.
    pub(crate) fn close(&mut self) {
        self.commands.take();
        let _ = self.child.wait();
    }

    fn command(&mut self, line: &str) -> Result<(), String> {
        let what = self.what;
        let commands = self
            .commands
            .as_mut()
            .ok_or_else(|| "the watchdog is closed".to_owned())?;
        writeln!(commands, "{line}")
            .and_then(|()| commands.flush())
            .map_err(|e| format!("the {what} watchdog is gone: {e}"))
    }

    fn reply(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.replies.read_line(&mut line) {
            Ok(0) => Err(format!("the {} watchdog exited", self.what)),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(format!("cannot read from the {} watchdog: {e}", self.what)),
        }
    }
}

/// Calls `start` with free ports until it succeeds (another process may take a port between
/// our pick and the server's bind); returns the port, or the last error.
pub(crate) fn on_free_port<E: From<String>>(
    mut start: impl FnMut(u16) -> Result<(), E>,
) -> Result<u16, E> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        match start(port) {
            Ok(()) => return Ok(port),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| E::from("no attempt was made".to_owned())))
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Creates a new directory only this user can enter, `taskstream-<what>-<pid>-<n>` in the
/// temporary directory.
pub(crate) fn private_dir(what: &str) -> Result<PathBuf, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("taskstream-{what}-{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
}

/// The last `lines` lines of `path`, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
