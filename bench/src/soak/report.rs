//! The soak's results: what ran, which faults were injected and survived, what the clients
//! received against the table, each instance's memory at its start and end, and the latency
//! between faults; written as JSON and Markdown, the verdict said loudly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::account::Account;
use super::instances::Incarnation;
use super::load::WriterStats;
use super::schedule::Fault;
use super::watcher::{Shared, WatcherReport};
use crate::record::{Percentiles, round3};
use crate::sysinfo::{self, Machine};

/// A soak this long or longer is the committed run (bench/results); shorter ones go under
/// target/.
const COMMITTED_LENGTH: Duration = Duration::from_secs(600);

/// Faults whose failure to inject is a failure of the run: an instance or PostgreSQL that does
/// not come back is a crash.
const MUST_RECOVER: [Fault; 3] = [
    Fault::KillInstance,
    Fault::DrainInstance,
    Fault::RestartPostgres,
];

/// One injected fault.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// Seconds from the start of the writing.
    pub at_s: f64,
    /// Which.
    pub fault: Fault,
    /// Seconds the injection took (a restart includes the start).
    pub took_s: f64,
    /// What happened.
    pub outcome: String,
    /// Whether it was injected as planned.
    pub injected: bool,
}

impl FaultRecord {
    /// The record of `fault` injected at `at`.
    pub fn new(
        at: Duration,
        fault: Fault,
        took: Duration,
        outcome: Result<String, String>,
    ) -> FaultRecord {
        let injected = outcome.is_ok();
        FaultRecord {
            at_s: round1(at.as_secs_f64()),
            fault,
            took_s: round3(took.as_secs_f64()),
            outcome: outcome.unwrap_or_else(|error| format!("not injected: {error}")),
            injected,
        }
    }

    /// The progress line.
    pub fn line(&self, delivered: u64, clients: usize) -> String {
        format!(
            "{:>6.1} s  {} ({:.2} s): {}; {delivered} events delivered to {clients} clients so far",
            self.at_s,
            self.fault.name(),
            self.took_s,
            self.outcome
        )
    }
}

/// Clients by behaviour, and what their connections went through.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClientFigures {
    /// Clients started.
    pub total: usize,
    /// Of which steady, reconnecting on their own, slow readers.
    pub by_behaviour: BTreeMap<String, usize>,
    /// Events received, all clients.
    pub delivered: u64,
    /// Connections re-opened after a failure or an end without `complete`.
    pub reconnects: u64,
    /// Connections dropped on the clients' own schedule and resumed.
    pub own_reconnects: u64,
    /// Connections cut mid-frame and resumed.
    pub cuts: u64,
}

/// The whole soak's results.
#[derive(Debug, serde::Serialize)]
pub struct SoakReport {
    /// `soak-<length>`.
    pub name: String,
    /// The command line.
    pub command: String,
    /// When it started.
    pub started_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// The server binary and its commit.
    pub taskstream: String,
    /// `/proc/loadavg` at the start and the end: the machine's 2 cores are shared with other
    /// work (other builds), which the latency figures include.
    pub loadavg: [String; 2],
    /// Seconds of writing with faults.
    pub duration_s: f64,
    /// Seconds in all, to the last client's end.
    pub seconds: f64,
    /// The load, in words.
    pub load: String,
    /// Every fault injected.
    pub faults: Vec<FaultRecord>,
    /// Faults injected as planned, by kind.
    pub faults_by_kind: BTreeMap<String, usize>,
    /// The writers' figures.
    pub writers: WriterStats,
    /// Rows in the table at the end.
    pub committed: u64,
    /// The clients.
    pub clients: ClientFigures,
    /// The ledger.
    pub account: Account,
    /// Write-to-receive latency of events written and received while no fault ran (from 2 s
    /// after a fault ended), at every client but the slow readers, ms.
    pub latency_between_faults_ms: Option<Percentiles>,
    /// Every instance process, with its memory.
    pub instances: Vec<Incarnation>,
    /// What failed the run besides the ledger.
    pub failures: Vec<String>,
    /// The verdict.
    pub passed: bool,
}

impl SoakReport {
    /// An empty report of a soak of `duration` with `bin`.
    pub fn new(label: &str, duration: Duration, files: u64, bin: &Path) -> SoakReport {
        SoakReport {
            name: format!("soak-{label}"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: sysinfo::machine(files),
            taskstream: crate::suite::taskstream_version(bin),
            loadavg: [sysinfo::loadavg(), String::new()],
            duration_s: duration.as_secs_f64(),
            seconds: 0.0,
            load: "3 instances on one database (--keepalive 2s --drain-deadline 1s); \
                   3 writers (2 over SQL, 1 over the JSON API: POST events, PUT status) × 6 \
                   running tasks at 30 events/s each, each task 15–45 events then completed \
                   while a new one starts, each task watched by \
                   3 clients (steady, self-reconnecting every 0.5–4 s, slow reader); one hot task \
                   at 20 events/s watched by 200 clients (160 steady, 20 self-reconnecting, \
                   20 slow); clients spread over the instances and move to the next one when a \
                   connection fails"
                .to_owned(),
            faults: Vec::new(),
            faults_by_kind: BTreeMap::new(),
            writers: WriterStats::default(),
            committed: 0,
            clients: ClientFigures::default(),
            account: Account::default(),
            latency_between_faults_ms: None,
            instances: Vec::new(),
            failures: Vec::new(),
            passed: false,
        }
    }

    /// Takes the clients' figures.
    pub fn take_clients(&mut self, clients: &[WatcherReport], shared: &Shared) {
        let c = &mut self.clients;
        c.total = clients.len();
        c.delivered = shared.delivered();
        for client in clients {
            let behaviour = serde_json::to_value(client.behaviour)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *c.by_behaviour.entry(behaviour).or_default() += 1;
            c.reconnects += client.reconnects;
            c.own_reconnects += client.own_reconnects;
            c.cuts += client.cuts;
        }
        self.latency_between_faults_ms = Percentiles::of(&shared.latency());
        if let Some(client) = clients
            .iter()
            .find(|c| !c.completed && c.first_error.is_some())
        {
            self.failures.push(format!(
                "a client of {} never saw complete; its first error: {}",
                client.task,
                client.first_error.as_deref().unwrap_or("")
            ));
        }
    }

    /// The verdict and the closing figures.
    pub fn finish(&mut self) {
        self.loadavg[1] = sysinfo::loadavg();
        for fault in &self.faults {
            if fault.injected {
                *self
                    .faults_by_kind
                    .entry(fault.fault.name().to_owned())
                    .or_default() += 1;
            } else if MUST_RECOVER.contains(&fault.fault) {
                self.failures
                    .push(format!("{}: {}", fault.fault.name(), fault.outcome));
            }
        }
        if self.writers.tasks_left_open > 0 {
            self.failures.push(format!(
                "{} tasks could not be completed at the end",
                self.writers.tasks_left_open
            ));
        }
        self.passed = self.account.is_exact() && self.failures.is_empty();
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Writes `<name>.json` and `<name>.md` to `out` (default: bench/results for a soak of
    /// [`COMMITTED_LENGTH`] or longer, else target/bench-soak), prints the Markdown and the
    /// verdict.
    pub fn publish(&self, out: Option<PathBuf>) -> Result<(), String> {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = out.unwrap_or_else(|| {
            if self.duration_s >= COMMITTED_LENGTH.as_secs_f64() {
                bench.join("results")
            } else {
                bench.parent().unwrap_or(bench).join("target/bench-soak")
            }
        });
        let md = self.markdown();
        crate::report::write_pair(&out, &self.name, self, &md)?;
        println!("{md}");
        println!("soak: results in {}/{}.json, .md", out.display(), self.name);
        if self.passed {
            eprintln!(
                "soak: PASSED: every client received exactly its task's committed rows, in \
                 order, and every task's complete"
            );
        } else {
            eprintln!(
                "soak: FAILED: {} lost, {} duplicated, {} unknown, {} clients without complete; {}",
                self.account.tally.lost,
                self.account.tally.duplicated,
                self.account.phantom,
                self.account.not_completed,
                self.failures.join("; ")
            );
        }
        Ok(())
    }

    fn markdown(&self) -> String {
        let a = &self.account;
        let c = &self.clients;
        let mut md = format!(
            "# Chaos soak: {}\n\n\
             - command: `{}`\n- taskstream: {}\n- machine: {}, {} cores, {} MiB, {}; the cores \
             are shared with other work on the machine (load average at start {}, at end {})\n\
             - load: {}\n- writing with faults: {:.0} s; in all {:.1} s\n\n\
             ## Verdict: {}\n\n\
             | figure | value |\n|---|---:|\n\
             | rows committed (the table at the end) | {} |\n\
             | events delivered to clients | {} |\n\
             | clients | {} ({}) |\n\
             | lost | {} |\n| duplicated | {} |\n| received but not in the table | {} |\n\
             | clients that never saw their task complete | {} |\n\
             | tasks started / completed | {} / {} |\n\
             | reconnects after a failure | {} |\n\
             | reconnects on the clients' own schedule | {} |\n\
             | connections cut mid-frame | {} |\n\
             | writer statements failed during faults / writer reconnects | {} / {} |\n",
            self.name,
            self.command,
            self.taskstream,
            self.machine.cpu_model,
            self.machine.cores,
            self.machine.memory_mib,
            self.machine.kernel,
            self.loadavg[0],
            self.loadavg[1],
            self.load,
            self.duration_s,
            self.seconds,
            if self.passed { "passed" } else { "**FAILED**" },
            self.committed,
            c.delivered,
            c.total,
            c.by_behaviour
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            a.tally.lost,
            a.tally.duplicated,
            a.phantom,
            a.not_completed,
            self.writers.tasks_started,
            self.writers.tasks_completed,
            c.reconnects,
            c.own_reconnects,
            c.cuts,
            self.writers.errors,
            self.writers.reconnects,
        );
        if let Some(p) = &self.latency_between_faults_ms {
            md.push_str(&format!(
                "| latency between faults, slow readers aside: p50 / p99 / p99.9 / max (ms, {} \
                 samples) | {:.2} / \
                 {:.2} / {:.2} / {:.1} |\n",
                p.samples, p.p50, p.p99, p.p999, p.max
            ));
        }
        md.push_str("\n## Faults survived\n\n| fault | injected |\n|---|---:|\n");
        for fault in Fault::ALL {
            let n = self.faults_by_kind.get(fault.name()).copied().unwrap_or(0);
            md.push_str(&format!("| {} | {n} |\n", fault.name()));
        }
        md.push_str(
            "\n## Instances (RSS at the start, once serving, and at the end)\n\n\
             | instance | pid | RSS start MiB | RSS end MiB | ended by | drain s |\n\
             |---:|---:|---:|---:|---|---:|\n",
        );
        let mib =
            |kib: Option<u64>| kib.map_or(String::new(), |k| format!("{:.1}", k as f64 / 1024.0));
        for i in &self.instances {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                i.instance,
                i.pid,
                mib(i.rss_start_kib),
                mib(i.rss_end_kib),
                i.ended_by.as_deref().unwrap_or(""),
                i.drain_seconds.map_or(String::new(), |s| format!("{s:.2}")),
            ));
        }
        if !self.failures.is_empty() {
            md.push_str("\n## Failures\n\n");
            for failure in &self.failures {
                md.push_str(&format!("- {failure}\n"));
            }
        }
        md.push_str("\n## Fault log\n\n");
        for fault in &self.faults {
            md.push_str(&format!(
                "- {:.1} s: {} ({:.2} s): {}\n",
                fault.at_s,
                fault.fault.name(),
                fault.took_s,
                fault.outcome
            ));
        }
        md
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
