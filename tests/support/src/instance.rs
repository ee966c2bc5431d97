//! An instance as a child process of the test (the `taskstream` binary), for what only a
//! process can suffer: SIGKILL. It dies with the test's thread that started it, however the
//! test ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::metrics::scrape;
use crate::wait::WAIT;

/// A running `taskstream` process.
pub struct ChildInstance {
    /// The process; killed if this is dropped first.
    child: Child,
    /// Where it serves (it listened on port 0 and said where).
    addr: SocketAddr,
}

impl ChildInstance {
    /// Starts `binary` (a test's `env!("CARGO_BIN_EXE_taskstream")`) on `database_url` with
    /// `args`, listening on a free loopback port; returns once it serves.
    pub async fn spawn(binary: &str, database_url: &str, args: &[&str]) -> ChildInstance {
        let mut command = Command::new(binary);
        command
            .args(["--database-url", database_url, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of this process.
        unsafe {
            command.pre_exec(|| {
                // Killed when the thread that started it ends (the test's runtime), so that no
                // instance outlives a test that panicked or was killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("run taskstream");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let find = async {
            while let Some(line) = lines.next_line().await.expect("read its stderr") {
                if let Some(url) = line.strip_prefix("taskstream: listening on http://") {
                    return url.parse::<SocketAddr>().expect("its address");
                }
            }
            panic!("taskstream exited before listening");
        };
        let addr = tokio::time::timeout(WAIT, find)
            .await
            .expect("taskstream listens in time");
        // Keep reading its log, so that a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ChildInstance { child, addr }
    }

    /// Where it serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
