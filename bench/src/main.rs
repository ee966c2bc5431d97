//! `bench`: the taskstream benchmark harness (issue 4). Parses the command line, raises the
//! open-file limit (10,000 streams need 10,000 sockets on each side), and hands over to
//! [`suite::run`].
//!
//! # Layout
//! From the top down: a module uses only modules listed after it.
//! - [`suite`]: the whole run, from PostgreSQL to the written results; [`cli`]: the flags;
//!   [`soak`]: the chaos soak (`--soak`) and [`scaling`]: the write ceiling against
//!   instances and listeners (`--scaling`), runs of their own.
//! - [`scenarios`]: how one (scenario, system) run goes and what it measures.
//! - [`plot`]: the latency SVG; [`report`]: the JSON and Markdown results; [`targets`]:
//!   issue 4's targets checked against them; [`record`]: what one (scenario, system) run
//!   measured.
//! - [`plan`]: the scenarios and their sizes, full and `--quick`.
//! - [`peers`]: the systems compared and their processes; [`nchan`]: the private nginx;
//!   [`process`]: stopping a process; [`metrics`]: taskstream's own counters.
//! - [`fleet`]: many SSE clients, driven together; [`h2_idle`]: idle HTTP/2 streams, many per
//!   connection; [`client`]: one client; [`shared`]: what a
//!   fleet's clients share; [`sse`]: reading frames; [`ledger`]: loss and duplication per
//!   client.
//! - [`http_writes`]: the JSON API's writes against direct SQL.
//! - [`writer`]: inserts (and nchan publishes) at a pace; [`dbstats`]: run databases and
//!   PostgreSQL's counters; [`pg`]: connecting to PostgreSQL; [`session`]: the sessions
//!   written to and streamed from.
//! - [`payload`]: what every event carries (write time, index), written and read back;
//!   [`sysinfo`]: `/proc` and the machine.

// A binary: `pub` marks what a module offers the others, so `unreachable_pub` does not apply.
#![warn(missing_docs, rust_2018_idioms)]

mod cli;
mod client;
mod dbstats;
mod fleet;
mod h2_idle;
mod http_writes;
mod ledger;
mod metrics;
mod nchan;
mod payload;
mod peers;
mod pg;
mod plan;
mod plot;
mod process;
mod record;
mod report;
mod scaling;
mod scenarios;
mod session;
mod shared;
mod soak;
mod sse;
mod suite;
mod sysinfo;
mod targets;
mod writer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let files = match taskstream::raise_open_files_limit() {
        Ok(files) => files,
        Err(error) => {
            eprintln!("bench: cannot raise the open-file limit: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        if cli.soak.is_none() && !cli.scaling {
            return suite::run(cli, files).await;
        }
        let bin = match &cli.server_bin {
            Some(bin) => bin.clone(),
            None => suite::build_server()?,
        };
        match cli.soak {
            Some(duration) => soak::run(duration, bin, cli.out.clone(), files).await,
            None => scaling::run(bin, cli.out.clone(), files).await,
        }
    };
    match runtime.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}
