//! The benchmark's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::peers::PeerKind;
use crate::plan::ScenarioKind;

/// Load generator for taskstream: latency, throughput, memory and database load, side by side
/// with taskstream polling and nginx + nchan. Starts its own PostgreSQL and servers on
/// loopback; every run is bounded in clients and time.
#[derive(Debug, Parser)]
#[command(name = "bench", about, long_about = None)]
pub struct Cli {
    /// Smoke run (under a minute): every scenario and system, small and short. Fails on any
    /// lost or duplicated event and on a scenario that did not run; asserts no timing.
    #[arg(long)]
    pub quick: bool,

    /// The results' file stem [default: `full`; `quick` with --quick; `partial` when systems,
    /// scenarios, sizes or the server are chosen].
    #[arg(long)]
    pub name: Option<String>,

    /// Where results go [default: bench/results for the complete full run, a soak of 10m or
    /// more and --scaling; otherwise target/bench-quick, target/bench-partial or
    /// target/bench-soak, so that no trial run overwrites the committed results].
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Systems to compare, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub systems: Vec<PeerKind>,

    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioKind>,

    /// Subscriber counts of the fan-out runs, comma-separated (overrides the plan's).
    #[arg(long, value_delimiter = ',')]
    pub fanout: Vec<usize>,

    /// Multiplies every client count of the plan (and the number of sessions), e.g. 0.05 for a
    /// small trial on a busy machine.
    #[arg(long)]
    pub scale: Option<f64>,

    /// Measure an already running taskstream at this URL (e.g. http://127.0.0.1:8080) instead
    /// of starting servers: only that system runs, and only scenarios that leave its database
    /// as they found it apart from the tasks they add (named `bench<time>-…`).
    #[arg(long, requires = "database_url")]
    pub target_url: Option<String>,

    /// With --target-url: the PostgreSQL that server serves from; the writer inserts there.
    #[arg(long, requires = "target_url")]
    pub database_url: Option<String>,

    /// With --target-url: the server's pid, so that its CPU time and memory are measured
    /// (without it they are not).
    #[arg(long, requires = "target_url")]
    pub server_pid: Option<u32>,

    /// Chaos soak instead of the scenarios: three instances under a mixed load with faults on
    /// a fixed schedule for this long (e.g. 30s, 10m), then a ledger of every client against
    /// the table. Fails on any lost or duplicated event, a task not seen to complete, or a
    /// crash; never on timing. Results: bench/results from 10m on, else target/bench-soak.
    #[arg(long, value_parser = humantime::parse_duration,
          conflicts_with_all = ["quick", "target_url", "scaling"])]
    pub soak: Option<Duration>,

    /// The write ceiling with 1, 4 and 16 instances on one database (plain and bus mode, event
    /// and address-only payloads), and PostgreSQL alone with 0–64 draining LISTEN connections.
    /// Results: bench/results/scaling.{json,md}.
    #[arg(long, conflicts_with_all = ["quick", "target_url"])]
    pub scaling: bool,

    /// The taskstream binary to run [default: built with `cargo build --release` first, so the
    /// figures are never those of a stale binary].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}
