//! The benchmark's command line.

use std::path::PathBuf;

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

    /// Where results go [default: bench/results for the complete full run only; otherwise
    /// target/bench-quick or target/bench-partial, so that no other run overwrites the
    /// committed results].
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

    /// The taskstream binary to run [default: built with `cargo build --release` first, so the
    /// figures are never those of a stale binary].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}
