//! The `taskstream` binary as a child process: for what only the real binary shows (its log
//! lines, its memory, apart from the test's own) or only a process can suffer (SIGKILL),
//! started on a test database. It dies with the test's thread that started it, however the test
//! ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::metrics::scrape;
use crate::wait::WAIT;

/// A running `taskstream` process. Killed when dropped.
pub struct ChildServer {
    child: Child,
    addr: SocketAddr,
    /// Every line it wrote on standard error so far.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Runs the binary at `program` (`env!("CARGO_BIN_EXE_taskstream")`) on `database_url`,
    /// listening on a free loopback port, with `args` besides; returns once it listens. Its
    /// standard error is a pipe, not a terminal.
    pub async fn start(program: &str, database_url: &str, args: &[&str]) -> ChildServer {
        let mut command = Command::new(program);
        command
            .args(["--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of this process.
        unsafe {
            command.pre_exec(|| {
                // Killed when the thread that started it ends (the test's runtime), so that no
                // server outlives a test that panicked or was killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("run taskstream");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("stderr") {
                let addr = line
                    .strip_prefix("taskstream: listening on http://")
                    .map(|addr| addr.parse().expect("an address"));
                stderr.lock().expect("stderr lines").push(line);
                if let Some(addr) = addr {
                    return addr;
                }
            }
            let lines = stderr.lock().expect("stderr lines").join("\n");
            panic!("taskstream exited before listening:\n{lines}");
        })
        .await
        .expect("taskstream listens in time");
        let collected = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().expect("stderr lines").push(line);
            }
        });
        ChildServer {
            child,
            addr,
            stderr,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its standard error so far, one line each.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lines").clone()
    }

    /// A line of `/proc/<pid>/status` in KiB: `VmRSS` (resident now) or `VmHWM` (the most it
    /// was resident so far).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// Its metrics, `None` once it is gone.
    pub async fn metrics(&self) -> Option<HashMap<String, f64>> {
        scrape(self.addr).await
    }

    /// One metric (0 when it is gone or does not report it).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .and_then(|metrics| metrics.get(name).copied())
            .unwrap_or(0.0)
    }

    /// Kills it with SIGKILL and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reap it");
    }
}
