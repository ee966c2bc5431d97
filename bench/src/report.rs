//! The results: one record per (scenario, system), the run's machine, versions and command, and
//! how they are written to `bench/results/` as JSON (every figure) and as a Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::ledger::Tally;
use crate::peers::ServerCounters;
use crate::sysinfo::Machine;
use crate::targets::{self, TargetCheck};
use crate::writer::WriteReport;

/// How a (scenario, system) run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran and every client received every event exactly once.
    Ok,
    /// The system could not run here (the reason says why).
    Skipped,
    /// It ran but lost or duplicated events, or could not finish.
    Failed,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    /// Events measured (per client: each client's copy counts).
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            samples: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    /// The measured window, seconds: from the first write (or the first connection) until
    /// every client was caught up.
    pub seconds: f64,
    /// The writer's batch in the window, if it wrote.
    pub writer: Option<WriteReport>,
    /// Benchmark frames received by all clients.
    pub frames: u64,
    /// `frames / seconds`.
    pub frames_per_second: f64,
    /// Body bytes received by all clients.
    pub bytes: u64,
    /// Write-to-receive latency.
    pub latency_ms: Option<Percentiles>,
    /// Every client's ledger, added up.
    pub tally: Tally,
    /// The worst client's ledger (index, tally), if one was not exact.
    pub worst_client: Option<(usize, Tally)>,
    /// Client reconnects after an unexpected end of stream.
    pub reconnects: u64,
    /// The first client error, if any.
    pub first_client_error: Option<String>,
    /// Whether the server's processes were known, so that CPU and memory were measured.
    pub server_measured: bool,
    /// Server (all its processes) user + system CPU seconds in the window.
    pub server_cpu_seconds: f64,
    /// The generator's (this process) CPU seconds in the window.
    pub generator_cpu_seconds: f64,
    /// PostgreSQL's (all its processes) CPU seconds in the window.
    pub db_cpu_seconds: Option<f64>,
    /// Peak resident memory of the server's processes over the run, KiB.
    pub server_peak_rss_kib: u64,
    /// Resident memory before any client connected, KiB.
    pub rss_before_kib: u64,
    /// Resident memory with every client connected, KiB.
    pub rss_connected_kib: u64,
    /// `(rss_connected - rss_before) / clients`, KiB.
    pub rss_per_stream_kib: Option<f64>,
    /// The server's own counters over the window (taskstream only).
    pub server_counters: Option<ServerCounters>,
    /// The server's database queries per second (taskstream only).
    pub server_queries_per_second: Option<f64>,
    /// Database transactions per second in the window: the writer's commits plus the server's
    /// queries (each an autocommit transaction), counted exactly by the two that make them.
    pub db_transactions_per_second: f64,
    /// `pg_stat_database.xact_commit` delta over the window, as a cross-check only: PostgreSQL
    /// publishes a backend's statistics at most once a second (an idle one's within ten), so
    /// over a short window it trails.
    pub db_xact_commit: i64,
    /// `db_xact_commit / seconds`.
    pub db_xact_per_second: f64,
    /// Most server connections to the database seen during the window.
    pub db_connections_max: Option<i64>,
    /// Scenario-specific figures (time to first event, catch-up time, …).
    pub extra: BTreeMap<String, f64>,
}

/// One (scenario, system) run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// The scenario kind (`fanout`, `saturation`, …).
    pub scenario: String,
    /// The scenario with its size (`fanout-1000`).
    pub label: String,
    /// The system.
    pub system: String,
    /// Clients (streams) opened.
    pub clients: usize,
    /// Sessions written to.
    pub sessions: usize,
    /// Events per second asked of the writer (`null`: as fast as it can).
    pub target_rate: Option<f64>,
    /// How it ended.
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// What it measured (also for a failed run, when it got that far).
    pub figures: Option<Figures>,
}

/// Versions of everything measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Versions {
    /// `rustc --version`.
    pub rustc: String,
    /// `taskstream --version` and the commit.
    pub taskstream: String,
    /// PostgreSQL's `server_version`.
    pub postgres: String,
    /// `nginx -v`, or why it is missing.
    pub nginx: String,
    /// The nchan module's package version.
    pub nchan: String,
}

/// A whole benchmark run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    /// The results' name (file stem).
    pub name: String,
    /// Whether this was the `--quick` smoke run.
    pub quick: bool,
    /// The exact command line.
    pub command: String,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Wall-clock seconds the whole run took.
    pub total_seconds: f64,
    /// The machine.
    pub machine: Machine,
    /// The versions.
    pub versions: Versions,
    /// Settings shared by every run (keep-alive, nginx workers, …).
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Every run.
    pub runs: Vec<RunRecord>,
    /// Issue 4's targets, checked against these runs.
    pub targets: Vec<TargetCheck>,
}

impl Results {
    /// Writes `<dir>/<name>.json` and `<dir>/<name>.md`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let json_path = dir.join(format!("{}.json", self.name));
        std::fs::write(&json_path, json + "\n")
            .map_err(|e| format!("write {}: {e}", json_path.display()))?;
        let md_path = dir.join(format!("{}.md", self.name));
        std::fs::write(&md_path, self.markdown())
            .map_err(|e| format!("write {}: {e}", md_path.display()))
    }

    /// The Markdown report: the machine, then one table row per run.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# taskstream benchmark: {}\n", self.name);
        let _ = writeln!(
            md,
            "{} ({} cores, {} MiB), {}. {}, PostgreSQL {}, nginx: {} with nchan {}, {}.\n",
            m.cpu_model,
            m.cores,
            m.memory_mib,
            m.kernel,
            self.versions.taskstream,
            self.versions.postgres,
            self.versions.nginx,
            self.versions.nchan,
            self.versions.rustc
        );
        let _ = writeln!(md, "Command: `{}`\n", self.command);
        md.push_str(&self.table());
        md.push_str(
            "\nLatency is from the writer issuing the INSERT to the client reading the frame \
             (both peers' writers commit to PostgreSQL first; nchan's then POSTs the event). \
             frames/s counts every client's copy. KiB/stream = (RSS with every client \
             connected − RSS before) / clients. Queries/s are the server's own database \
             queries (nchan makes none); db tx/s adds the writer's commits. Timings come from a shared machine unless stated.\n\n",
        );
        md.push_str(&targets::markdown(&self.targets));
        md
    }

    /// The results table alone (what the README quotes).
    pub fn table(&self) -> String {
        let mut md = String::new();
        md.push_str(
            "| scenario | system | clients | writes/s | frames/s | p50 ms | p90 ms | p99 ms | \
             p99.9 ms | max ms | server CPU s | peak RSS MiB | KiB/stream | queries/s | \
             db tx/s | lost | dup | notes |\n",
        );
        md.push_str(
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for run in &self.runs {
            let Some(f) = &run.figures else {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | | | | | | | | | | | | | | | {}: {} |",
                    run.label,
                    run.system,
                    run.clients,
                    status_word(run.status),
                    run.reason.as_deref().unwrap_or("")
                );
                continue;
            };
            let lat = |pick: fn(&Percentiles) -> f64| {
                f.latency_ms
                    .as_ref()
                    .map_or(String::new(), |p| format!("{:.2}", pick(p)))
            };
            let mut notes: Vec<String> = f
                .extra
                .iter()
                .map(|(k, v)| format!("{k} {}", number(*v)))
                .collect();
            if let Some(c) = f.db_connections_max {
                notes.push(format!("db conns {c}"));
            }
            if f.reconnects > 0 {
                notes.push(format!("reconnects {}", f.reconnects));
            }
            if run.status != Status::Ok {
                notes.insert(
                    0,
                    format!(
                        "**{}**: {}",
                        status_word(run.status),
                        run.reason.as_deref().unwrap_or("")
                    ),
                );
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.label,
                run.system,
                run.clients,
                f.writer.map_or(String::new(), |w| number(w.rate)),
                if f.frames > 0 {
                    number(f.frames_per_second)
                } else {
                    String::new()
                },
                lat(|p| p.p50),
                lat(|p| p.p90),
                lat(|p| p.p99),
                lat(|p| p.p999),
                lat(|p| p.max),
                if f.server_measured {
                    format!("{:.2}", f.server_cpu_seconds)
                } else {
                    String::new()
                },
                if f.server_measured {
                    format!("{:.1}", f.server_peak_rss_kib as f64 / 1024.0)
                } else {
                    String::new()
                },
                f.rss_per_stream_kib
                    .map_or(String::new(), |k| format!("{k:.1}")),
                f.server_queries_per_second.map_or(String::new(), number),
                number(f.db_transactions_per_second),
                f.tally.lost,
                f.tally.duplicated,
                notes.join("; ")
            );
        }
        md
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Skipped => "skipped",
        Status::Failed => "FAILED",
    }
}

/// A figure with sensible precision: 1234567 → "1234567", 12.345 → "12.3", 0.1234 → "0.12".
fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fan-out run record for tests.
    pub(crate) fn fanout_run(status: Status, figures: Option<Figures>) -> RunRecord {
        RunRecord {
            scenario: "fanout".into(),
            label: "fanout-1".into(),
            system: "taskstream".into(),
            clients: 1,
            sessions: 1,
            target_rate: Some(100.0),
            status,
            reason: None,
            figures,
        }
    }

    /// Results holding `runs`, for tests.
    pub(crate) fn results(runs: Vec<RunRecord>) -> Results {
        Results {
            name: "t".into(),
            quick: true,
            command: "bench".into(),
            started_unix: 0,
            total_seconds: 0.0,
            machine: Machine {
                cpu_model: "cpu".into(),
                cores: 2,
                kernel: "linux".into(),
                memory_mib: 1,
                nofile_limit: 1,
            },
            versions: Versions {
                rustc: String::new(),
                taskstream: String::new(),
                postgres: String::new(),
                nginx: String::new(),
                nchan: String::new(),
            },
            settings: BTreeMap::new(),
            runs,
            targets: Vec::new(),
        }
    }

    #[test]
    fn every_table_row_has_as_many_cells_as_the_header() {
        let results = results(vec![
            fanout_run(Status::Ok, Some(Figures::default())),
            fanout_run(Status::Skipped, None),
        ]);
        let table = results.table();
        let cells: Vec<usize> = table.lines().map(|l| l.matches('|').count()).collect();
        assert_eq!(cells.len(), 4);
        assert!(cells.iter().all(|&c| c == cells[0]), "{table}");
    }

    #[test]
    fn numbers_keep_sensible_precision() {
        assert_eq!(number(1_234_567.8), "1234568");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.1234), "0.12");
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid");
        for us in [1_000, 2_000, 3_000] {
            h.record(us).expect("in range");
        }
        let p = Percentiles::of(&h).expect("not empty");
        assert_eq!(p.samples, 3);
        assert!((p.p50 - 2.0).abs() < 0.01, "{p:?}");
        assert!((p.max - 3.0).abs() < 0.01, "{p:?}");
        assert!(Percentiles::of(&Histogram::<u64>::new(3).expect("valid")).is_none());
    }
}
