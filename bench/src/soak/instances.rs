//! The soak's three taskstream instances on one database, each on a fixed loopback port so
//! that a restarted instance is found where clients look for it. Instance 0 is never harmed
//! (its memory at the start and the end shows a leak), instance 1 is the one killed with
//! SIGKILL, instance 2 the one drained with SIGTERM; each incarnation's memory is recorded.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::peers::{ServerLog, spawn_taskstream};
use crate::process::signal_and_wait;
use crate::sysinfo;

/// Instances in the soak.
pub const INSTANCES: usize = 3;
/// The instance killed with SIGKILL.
pub const KILLED: usize = 1;
/// The instance drained with SIGTERM.
pub const DRAINED: usize = 2;

/// The drain deadline the instances run with (`--drain-deadline`).
pub const DRAIN_DEADLINE: &str = "1s";
/// How long a drained instance may take to exit before it counts as a failed drain: ten
/// times its deadline, so that only a hang, never a slow machine, fails it.
const DRAIN_WAIT: Duration = Duration::from_secs(10);
/// The lowest port the instances may listen on.
const FIRST_PORT: u16 = 20_000;
/// Attempts to start an instance (its port may still be held for a moment after a kill).
const START_ATTEMPTS: usize = 5;

/// One process's life.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Incarnation {
    /// Which instance (0, 1, 2).
    pub instance: usize,
    /// Its pid.
    pub pid: u32,
    /// RSS once it served clients (at the first fault after its start), KiB.
    pub rss_start_kib: Option<u64>,
    /// RSS just before it ended, KiB.
    pub rss_end_kib: Option<u64>,
    /// How it ended: `SIGKILL`, `SIGTERM`, `end of run`, or `crashed` (which fails the run).
    pub ended_by: Option<String>,
    /// Seconds from SIGTERM to its exit, for a drained instance.
    pub drain_seconds: Option<f64>,
}

struct Slot {
    port: u16,
    child: Option<Child>,
    log: Option<ServerLog>,
}

/// The running instances.
pub struct Instances {
    bin: PathBuf,
    url: String,
    slots: Vec<Slot>,
    /// Every process started, in order.
    pub incarnations: Vec<Incarnation>,
    /// Failures that are not faults: a crash, a failed restart, a drain that hung.
    pub failures: Vec<String>,
}

impl Instances {
    /// Starts [`INSTANCES`] instances of `bin` on the database at `url`.
    pub fn start(bin: PathBuf, url: &str) -> Result<Instances, String> {
        let mut instances = Instances {
            bin,
            url: url.to_owned(),
            slots: Vec::new(),
            incarnations: Vec::new(),
            failures: Vec::new(),
        };
        let mut port = 0;
        for _ in 0..INSTANCES {
            port = free_port(port + 1)?;
            instances.slots.push(Slot {
                port,
                child: None,
                log: None,
            });
        }
        for i in 0..INSTANCES {
            instances.spawn(i)?;
        }
        Ok(instances)
    }

    /// Where clients connect.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.slots
            .iter()
            .map(|s| SocketAddr::from(([127, 0, 0, 1], s.port)))
            .collect()
    }

    /// Records the memory of instances that have served since they started, and notes any
    /// instance that exited on its own.
    pub fn check(&mut self) {
        for i in 0..INSTANCES {
            let exited = match self.slots[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(error)) => Some(error.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                let log = self.log_of(i);
                self.failures
                    .push(format!("instance {i} exited by itself ({status}): {log}"));
                self.end(i, "crashed");
                self.slots[i].child = None;
                if let Err(error) = self.spawn(i) {
                    self.failures.push(error);
                }
                continue;
            }
            if let Some(incarnation) = self.current(i)
                && incarnation.rss_start_kib.is_none()
            {
                incarnation.rss_start_kib = Some(sysinfo::sample(&[incarnation.pid]).rss_kib);
            }
        }
    }

    /// SIGKILLs instance [`KILLED`] and starts it again.
    pub fn kill_and_restart(&mut self) -> Result<(), String> {
        let i = KILLED;
        self.end(i, "SIGKILL");
        if let Some(mut child) = self.slots[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn(i)
    }

    /// SIGTERMs instance [`DRAINED`], waits for it to drain and exit, and starts it again.
    pub fn drain_and_restart(&mut self) -> Result<(), String> {
        let i = DRAINED;
        self.end(i, "SIGTERM");
        if let Some(mut child) = self.slots[i].child.take() {
            let took = signal_and_wait(&mut child, DRAIN_WAIT);
            match took {
                Some(took) => {
                    if let Some(incarnation) =
                        self.incarnations.iter_mut().rfind(|c| c.instance == i)
                    {
                        incarnation.drain_seconds =
                            Some((took.as_secs_f64() * 1000.0).round() / 1000.0);
                    }
                }
                None => {
                    self.failures.push(format!(
                        "instance {i} did not exit within {DRAIN_WAIT:?} of SIGTERM \
                         (drain deadline {DRAIN_DEADLINE})"
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        self.spawn(i)
    }

    /// Stops every instance (SIGTERM, as a deploy would) at the end of the run.
    pub fn stop(&mut self) {
        self.check();
        for i in 0..INSTANCES {
            self.end(i, "end of run");
            if let Some(mut child) = self.slots[i].child.take() {
                crate::process::terminate(&mut child, DRAIN_WAIT);
            }
        }
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let listen = format!("127.0.0.1:{}", self.slots[i].port);
        let args = [
            "--keepalive",
            "2s",
            "--drain-deadline",
            DRAIN_DEADLINE,
            "--poll-interval",
            "500ms",
        ];
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match spawn_taskstream(&self.bin, &self.url, &listen, &args) {
                Ok((child, _, log)) => {
                    self.incarnations.push(Incarnation {
                        instance: i,
                        pid: child.id(),
                        rss_start_kib: None,
                        rss_end_kib: None,
                        ended_by: None,
                        drain_seconds: None,
                    });
                    self.slots[i].child = Some(child);
                    self.slots[i].log = Some(log);
                    return Ok(());
                }
                Err(error) => last_error = error,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("instance {i} could not be started: {last_error}"))
    }

    fn current(&mut self, i: usize) -> Option<&mut Incarnation> {
        let pid = self.slots[i].child.as_ref()?.id();
        self.incarnations.iter_mut().rfind(|c| c.pid == pid)
    }

    fn end(&mut self, i: usize, how: &str) {
        if let Some(incarnation) = self.current(i)
            && incarnation.ended_by.is_none()
        {
            incarnation.rss_end_kib = Some(sysinfo::sample(&[incarnation.pid]).rss_kib);
            incarnation.ended_by = Some(how.to_owned());
        }
    }

    fn log_of(&self, i: usize) -> String {
        self.slots[i].log.as_ref().map_or_else(String::new, |log| {
            log.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .join(" | ")
        })
    }
}

/// A free loopback port below the kernel's ephemeral range: a port from that range could be
/// taken as the local port of one of the clients' own connections while its instance is down,
/// and the instance could then not start again on it.
fn free_port(after: u16) -> Result<u16, String> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let first = after.max(FIRST_PORT + (std::process::id() % 4_096) as u16);
    (first..ephemeral_low)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .ok_or_else(|| format!("no free loopback port between {first} and {ephemeral_low}"))
}
