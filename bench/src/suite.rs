//! The whole benchmark run: build (or take) the server binary, start a private PostgreSQL,
//! run every scenario against every system, then write the results and say loudly whether
//! every client received every event exactly once.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use taskstream::embedded_pg::Cluster;
use tokio::time::Instant;

use crate::cli::Cli;
use crate::dbstats::Monitor;
use crate::metrics;
use crate::nchan::{self, NginxSetup};
use crate::peers::{PeerKind, PeerSetup};
use crate::plan::{NOT_APPLICABLE, Plan, ScenarioKind};
use crate::record::{RunRecord, Status};
use crate::report::{Results, Versions};
use crate::scenarios;
use crate::sysinfo;

/// Keep-alive comment (taskstream) and ping (nchan) interval during the runs, seconds. Shorter
/// than taskstream's 15 s default so that the idle hold sees keep-alives.
const KEEPALIVE_SECONDS: u64 = 5;

/// Every scenario, in run order.
const ALL_SCENARIOS: [ScenarioKind; 10] = [
    ScenarioKind::Fanout,
    ScenarioKind::Saturation,
    ScenarioKind::Sessions,
    ScenarioKind::Idle,
    ScenarioKind::IdleH2,
    ScenarioKind::Storm,
    ScenarioKind::Replay,
    ScenarioKind::WriteCeiling,
    ScenarioKind::HttpWrites,
    ScenarioKind::Multi,
];

/// Runs the benchmark; `Ok(false)` when a run failed (loss, duplication, a scenario that did
/// not run).
pub async fn run(cli: Cli, files: u64) -> Result<bool, String> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let selection = Selection::of(&cli)?;
    let (name, out) = destination(&cli);

    let server_bin = server_bin(&cli, selection.target)?;
    let nginx = nginx(&selection.systems);
    let (cluster, monitor) = start_database(&cli).await?;
    let versions = versions(&cli, selection.target, &server_bin, &nginx, &monitor).await;
    let setup = PeerSetup {
        server_bin,
        nginx,
        keepalive_seconds: KEEPALIVE_SECONDS,
        files,
        target: selection.target,
    };
    let postgres_pid = cluster.as_ref().and_then(Cluster::server_pid);

    let runs = run_all(&selection, &monitor, &setup, postgres_pid).await;

    let settings = settings(&cli, &selection.plan)?;
    let results = Results {
        name,
        quick: cli.quick,
        command,
        started_unix,
        total_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        machine: sysinfo::machine(files),
        versions,
        settings,
        targets: crate::targets::check(&runs),
        runs,
    };
    publish(&results, &out)?;
    drop(monitor);
    drop(cluster);
    Ok(verdict(&results, &selection.kinds))
}

/// What this benchmark runs: the sizes, the systems and the scenarios.
#[derive(Debug)]
struct Selection {
    plan: Plan,
    /// A server already running (`--target-url`), and its pid if given: then the only system.
    target: Option<(SocketAddr, Option<u32>)>,
    systems: Vec<PeerKind>,
    /// The scenarios, in run order.
    kinds: Vec<ScenarioKind>,
}

impl Selection {
    /// What the flags choose, less the scenarios a server the benchmark did not start cannot
    /// take.
    fn of(cli: &Cli) -> Result<Selection, String> {
        let plan = plan(cli);
        let target = cli
            .target_url
            .as_deref()
            .map(target_addr)
            .transpose()?
            .map(|addr| (addr, cli.server_pid));
        let systems: Vec<PeerKind> = if target.is_some() {
            vec![PeerKind::Target]
        } else if cli.systems.is_empty() {
            PeerKind::ALL.to_vec()
        } else {
            cli.systems.clone()
        };
        let mut kinds: Vec<ScenarioKind> = if cli.scenarios.is_empty() {
            ALL_SCENARIOS.to_vec()
        } else {
            cli.scenarios.clone()
        };
        if target.is_some() && kinds.contains(&ScenarioKind::WriteCeiling) {
            eprintln!(
                "bench: write-ceiling is left out: it alters the schema of the database it uses"
            );
            kinds.retain(|k| *k != ScenarioKind::WriteCeiling);
        }
        Ok(Selection {
            plan,
            target,
            systems,
            kinds,
        })
    }
}

/// The results' name and directory. Only the complete full run lands in bench/results (the
/// committed results); a smoke run or a partial run (some systems, scenarios, sizes or another
/// server) goes under target/.
fn destination(cli: &Cli) -> (String, PathBuf) {
    let partial = !cli.systems.is_empty()
        || !cli.scenarios.is_empty()
        || !cli.fanout.is_empty()
        || cli.scale.is_some()
        || cli.target_url.is_some()
        || cli.server_bin.is_some();
    let kind = match (cli.quick, partial) {
        (true, _) => "quick",
        (false, true) => "partial",
        (false, false) => "full",
    };
    let name = cli.name.clone().unwrap_or_else(|| kind.to_owned());
    let out = cli.out.clone().unwrap_or_else(|| {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
        match kind {
            "full" => bench.join("results"),
            _ => bench
                .parent()
                .unwrap_or(bench)
                .join(format!("target/bench-{kind}")),
        }
    });
    (name, out)
}

/// The taskstream binary the runs start: the one given, none for a server already running, or
/// else a fresh release build.
fn server_bin(cli: &Cli, target: Option<(SocketAddr, Option<u32>)>) -> Result<PathBuf, String> {
    match (&cli.server_bin, target) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(_)) => Ok(PathBuf::new()),
        (None, None) => build_server(),
    }
}

/// nginx with nchan, or why that system cannot run (said at once when it was selected).
fn nginx(systems: &[PeerKind]) -> Result<NginxSetup, String> {
    if !systems.contains(&PeerKind::Nchan) {
        return Err("not selected".to_owned());
    }
    let nginx = nchan::detect();
    if let Err(reason) = &nginx {
        eprintln!("bench: nginx-nchan will be skipped: {reason}");
    }
    nginx
}

/// The PostgreSQL the runs use: the database given with `--database-url`, or else a private
/// cluster, which lives as long as the returned handle.
async fn start_database(cli: &Cli) -> Result<(Option<Cluster>, Monitor), String> {
    match &cli.database_url {
        Some(url) => Ok((None, Monitor::shared(url).await?)),
        None => {
            let (cluster, monitor) = private_database("bench").await?;
            Ok((Some(cluster), monitor))
        }
    }
}

/// A private PostgreSQL cluster (stopped when the handle drops, or by its watchdog if this
/// process dies) with the template every run database is copied from; `who` prefixes the
/// progress line.
pub async fn private_database(who: &str) -> Result<(Cluster, Monitor), String> {
    eprintln!("{who}: starting a private PostgreSQL");
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let monitor = Monitor::start(&cluster.url("postgres")).await?;
    Ok((cluster, monitor))
}

/// The versions of everything measured.
async fn versions(
    cli: &Cli,
    target: Option<(SocketAddr, Option<u32>)>,
    server_bin: &Path,
    nginx: &Result<NginxSetup, String>,
    monitor: &Monitor,
) -> Versions {
    Versions {
        rustc: sysinfo::command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        taskstream: match (target, &cli.target_url) {
            (Some((addr, _)), Some(url)) => target_version(addr, url).await,
            _ => taskstream_version(server_bin),
        },
        postgres: monitor.version().await.unwrap_or_else(|e| e),
        nginx: match nginx {
            Ok(setup) => setup.version.clone(),
            Err(reason) => format!("unavailable: {reason}"),
        },
        nchan: match nginx {
            Ok(setup) => setup.nchan_version.clone(),
            Err(_) => "unavailable".to_owned(),
        },
    }
}

/// Every scenario on every selected system, one run after the other, each logged as it ends.
async fn run_all(
    selection: &Selection,
    monitor: &Monitor,
    setup: &PeerSetup,
    postgres_pid: Option<u32>,
) -> Vec<RunRecord> {
    let plan = &selection.plan;
    let mut runs: Vec<RunRecord> = Vec::new();
    for scenario in plan.scenarios(&selection.kinds) {
        for &system in &selection.systems {
            let label = scenario.label(plan);
            eprintln!("bench: {label} on {} …", system.name());
            let record = scenarios::run(
                plan,
                monitor,
                setup,
                postgres_pid,
                runs.len(),
                scenario,
                system,
            )
            .await;
            eprintln!("bench:   {}", summary(&record));
            runs.push(record);
        }
    }
    runs
}

/// The settings every run shared, for the results.
fn settings(cli: &Cli, plan: &Plan) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut settings = BTreeMap::new();
    settings.insert("keepalive_seconds".into(), KEEPALIVE_SECONDS.into());
    settings.insert("nginx_workers".into(), nchan::WORKERS.into());
    settings.insert("taskstream_processes".into(), 1.into());
    settings.insert(
        "plan".into(),
        serde_json::to_value(plan).map_err(|e| e.to_string())?,
    );
    if let Some(url) = &cli.target_url {
        settings.insert(
            "target".into(),
            serde_json::Value::String(format!(
                "{url}: a server this run did not start; its peak RSS is its lifetime peak{}",
                if cli.server_pid.is_none() {
                    ", and its CPU and memory were not measured (no --server-pid)"
                } else {
                    ""
                }
            )),
        );
    }
    Ok(settings)
}

/// Writes the results and the latency plot, then prints the table and where they went.
fn publish(results: &Results, out: &Path) -> Result<(), String> {
    results.write(out)?;
    let plotted = crate::plot::latency(results, out)?;
    println!("{}", results.table());
    println!(
        "bench: results in {}/{}.json, .md{} ({:.1} s)",
        out.display(),
        results.name,
        if plotted { ", -latency.svg" } else { "" },
        results.total_seconds
    );
    Ok(())
}

/// The plan for these flags.
fn plan(cli: &Cli) -> Plan {
    let mut plan = if cli.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if !cli.fanout.is_empty() {
        plan.fanout_subscribers = cli.fanout.clone();
    }
    if let Some(f) = cli.scale {
        let scale = |n: usize| ((n as f64 * f).round() as usize).max(1);
        plan.fanout_subscribers = plan.fanout_subscribers.iter().map(|&n| scale(n)).collect();
        plan.fanout_subscribers.dedup();
        plan.saturation_subscribers = scale(plan.saturation_subscribers);
        plan.sessions = scale(plan.sessions);
        plan.idle_streams = scale(plan.idle_streams);
        plan.storm_clients = scale(plan.storm_clients);
    }
    plan
}

/// Prints every failure loudly; `true` when there is none and every scenario ran.
fn verdict(results: &Results, kinds: &[ScenarioKind]) -> bool {
    let mut ok = true;
    for run in &results.runs {
        if run.status == Status::Failed {
            ok = false;
            eprintln!(
                "\nbench: FAILED: {} on {}: {}",
                run.label,
                run.system,
                run.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    for kind in kinds {
        let name = kind.name();
        let mut runs = results.runs.iter().filter(|r| r.scenario == name);
        let ran = runs.clone().any(|r| r.status == Status::Ok);
        // A scenario that does not apply to any selected system (write-ceiling with only
        // nginx-nchan, say) has nothing to produce.
        let inapplicable = runs.clone().next().is_some()
            && runs.all(|r| {
                r.status == Status::Skipped
                    && r.reason
                        .as_deref()
                        .is_some_and(|why| why.starts_with(NOT_APPLICABLE))
            });
        if !ran && !inapplicable {
            ok = false;
            eprintln!("\nbench: FAILED: scenario {name} produced no result");
        }
    }
    let (lost, duplicated) = results
        .runs
        .iter()
        .filter_map(|r| r.figures.as_ref())
        .fold((0, 0), |(l, d), f| {
            (l + f.tally.lost, d + f.tally.duplicated)
        });
    let count = |status| results.runs.iter().filter(|r| r.status == status).count();
    // The plain closing line that test-result readers understand (runs, not unit tests).
    println!(
        "bench: {} passed, {} failed, {} skipped",
        count(Status::Ok),
        count(Status::Failed),
        count(Status::Skipped)
    );
    if ok {
        eprintln!("bench: every client received every event exactly once (0 lost, 0 duplicated)");
    } else {
        eprintln!(
            "bench: FAILED ({lost} events lost, {duplicated} duplicated over all runs; see above)"
        );
    }
    ok
}

/// One line per run for the progress log.
fn summary(run: &RunRecord) -> String {
    let Some(f) = &run.figures else {
        return format!("{:?}: {}", run.status, run.reason.as_deref().unwrap_or(""));
    };
    let latency = f.latency_ms.map_or(String::new(), |p| {
        format!(
            " p50 {:.2} ms p99 {:.2} ms max {:.1} ms",
            p.p50, p.p99, p.max
        )
    });
    format!(
        "{:?}: {} frames, {:.0} frames/s,{latency}, lost {}, dup {}{}",
        run.status,
        f.frames,
        f.frames_per_second,
        f.tally.lost,
        f.tally.duplicated,
        run.reason
            .as_ref()
            .map_or(String::new(), |r| format!(" ({r})"))
    )
}

/// Builds the release server binary with the cargo that runs us (a no-op when it is fresh)
/// and returns its path. No `-p`: with the workspace's default members selected, features
/// resolve as for `cargo build --release` and `cargo run --release`, so the three share one
/// binary instead of relinking each other's.
pub fn build_server() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    eprintln!("bench: building the release server (cargo build --release --bin taskstream)");
    let mut command = Command::new(cargo);
    // `cargo run` gives us the variables it sets for the package it runs; passed on, build
    // scripts that watch them would see a changed environment and rebuild half the tree.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_CRATE_")
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_RUSTC_CURRENT_DIR"
        {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .args(["build", "--release", "--bin", "taskstream"])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run cargo: {e}"))?;
    if !output.status.success() {
        return Err("building the server failed".to_owned());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "taskstream")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no taskstream executable".to_owned())
}

/// The address of `--target-url`: loopback only, since this is a load generator.
fn target_addr(url: &str) -> Result<SocketAddr, String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--target-url {url:?} must start with http://"))?;
    let host = host.split('/').next().unwrap_or(host);
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--target-url {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target-url {url:?} resolves to no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--target-url {url:?} is not a loopback address: the benchmark only loads this machine"
        ));
    }
    Ok(addr)
}

/// The version a running server reports in its `build_info` metric.
async fn target_version(addr: SocketAddr, url: &str) -> String {
    let metrics = crate::peers::get(addr, "/metrics")
        .await
        .unwrap_or_default();
    let version = metrics::build_version(&metrics).unwrap_or("unknown");
    format!("taskstream {version} running at {url}")
}

/// `taskstream --version` and the commit it was built from.
pub fn taskstream_version(bin: &Path) -> String {
    let version = sysinfo::command_line(&bin.display().to_string(), &["--version"])
        .unwrap_or_else(|| "unknown".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let commit = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Tally;
    use crate::record::Figures;
    use crate::record::tests::fanout_run;
    use crate::report::tests::results;

    #[test]
    fn a_lost_event_or_a_scenario_without_result_fails_the_run() {
        let exact = results(vec![fanout_run(Status::Ok, Some(Figures::default()))]);
        assert!(verdict(&exact, &[ScenarioKind::Fanout]));
        assert!(
            !verdict(&exact, &[ScenarioKind::Fanout, ScenarioKind::Storm]),
            "storm produced nothing"
        );

        let lossy = Figures {
            tally: Tally {
                received: 9,
                lost: 1,
                duplicated: 0,
            },
            ..Figures::default()
        };
        let failed = results(vec![fanout_run(Status::Failed, Some(lossy))]);
        assert!(!verdict(&failed, &[ScenarioKind::Fanout]));
    }

    #[test]
    fn a_scenario_that_applies_to_no_selected_system_is_not_missing() {
        let mut skipped = fanout_run(Status::Skipped, None);
        skipped.scenario = "write-ceiling".into();
        skipped.reason = Some(format!("{NOT_APPLICABLE}: only with taskstream"));
        let runs = results(vec![
            fanout_run(Status::Ok, Some(Figures::default())),
            skipped,
        ]);
        assert!(verdict(
            &runs,
            &[ScenarioKind::Fanout, ScenarioKind::WriteCeiling]
        ));
    }
}
