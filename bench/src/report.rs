//! The results: the records of every (scenario, system) run ([`crate::record`]), the run's
//! machine, versions and command, and how they are written to `bench/results/` as JSON (every
//! figure) and as a Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::record::{Figures, Percentiles, RunRecord, Status};
use crate::sysinfo::Machine;
use crate::targets::{self, TargetCheck};

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
        write_pair(dir, &self.name, self, &self.markdown())
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
             p99.9 ms | max ms | server CPU s | CPU µs/frame | peak RSS MiB | KiB/stream | \
             queries/s | db tx/s | lost | dup | notes |\n",
        );
        md.push_str(
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for run in &self.runs {
            let Some(f) = &run.figures else {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | | | | | | | | | | | | | | | | {}: {} |",
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
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
                cpu_per_frame(f),
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

/// The server's CPU time per delivered frame in µs (issue 18's comparison with nchan), when the
/// server was measured and frames were delivered.
fn cpu_per_frame(f: &Figures) -> String {
    if f.server_measured && f.frames > 0 {
        format!("{:.2}", f.server_cpu_seconds * 1e6 / f.frames as f64)
    } else {
        String::new()
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

/// Writes `<name>.json` (`value`) and `<name>.md` (`markdown`) into `dir`, creating it: every
/// kind of run (scenarios, soak, scaling) stores its results this way.
pub fn write_pair(
    dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
    markdown: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    let json_path = dir.join(format!("{name}.json"));
    std::fs::write(&json_path, json + "\n")
        .map_err(|e| format!("write {}: {e}", json_path.display()))?;
    let md_path = dir.join(format!("{name}.md"));
    std::fs::write(&md_path, markdown).map_err(|e| format!("write {}: {e}", md_path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Figures;
    use crate::record::tests::fanout_run;

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
}
