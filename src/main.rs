//! The `taskstream` binary: reads the configuration, starts logging, starts a private
//! PostgreSQL when no `DATABASE_URL` is given, and runs the server until SIGINT or SIGTERM;
//! or, as `taskstream migrate`, migrates a database and exits.

use std::process::ExitCode;

use clap::Parser;
use taskstream::config::{Cli, Command, MigrateArgs};
use taskstream::db;
use taskstream::embedded_pg::Cluster;
use taskstream::{demo, shutdown};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    taskstream::logging::init(&cli.log, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("taskstream: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Migrate(ref args)) => runtime.block_on(migrate(cli.database_url, args)),
        None => runtime.block_on(run(cli)),
    }
}

/// `taskstream migrate`: prints what it did on stdout and exits 0, or prints PostgreSQL's
/// reason on stderr and exits 1 (2 for a missing database URL, like any usage error).
async fn migrate(database_url: Option<String>, args: &MigrateArgs) -> ExitCode {
    let Some(url) = database_url else {
        eprintln!("taskstream migrate: needs --database-url (or DATABASE_URL)");
        return ExitCode::from(2);
    };
    let options = db::MigrateOptions {
        notify_payload: args.notify_payload,
        ..db::MigrateOptions::default()
    };
    match db::migrate(&url, &options).await {
        Ok(migration) => {
            for line in migration.lines() {
                println!("taskstream migrate: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("taskstream migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    match taskstream::raise_open_files_limit() {
        Ok(limit) if (limit as usize) < cli.config.max_streams + 100 => eprintln!(
            "taskstream: warning: only {limit} open files allowed, fewer than --max-streams {}",
            cli.config.max_streams
        ),
        Ok(_) => {}
        Err(error) => eprintln!("taskstream: warning: cannot raise the open files limit: {error}"),
    }
    let (database_url, cluster) = match &cli.database_url {
        Some(url) => (url.clone(), None),
        None => {
            eprintln!("taskstream: no DATABASE_URL, starting a private PostgreSQL with demo data");
            match tokio::task::spawn_blocking(Cluster::start).await {
                Ok(Ok(cluster)) => {
                    eprintln!(
                        "taskstream: PostgreSQL is up in {} on port {} (its Unix socket only)",
                        cluster.dir().display(),
                        cluster.port()
                    );
                    (cluster.url("postgres"), Some(cluster))
                }
                Ok(Err(error)) => {
                    eprintln!("taskstream: {error}");
                    return ExitCode::FAILURE;
                }
                Err(error) => {
                    eprintln!("taskstream: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };

    let server = match taskstream::start(cli.config, &database_url, cli.listen).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("taskstream: {error}");
            return ExitCode::FAILURE;
        }
    };
    let base_url = format!("http://{}", server.local_addr());
    eprintln!("taskstream: listening on {base_url}");
    eprintln!("taskstream: the live viewer is at {base_url}/");

    let (stop_demo, demo_shutdown) = shutdown::channel();
    if cluster.is_some() {
        eprintln!("taskstream: stop with Ctrl-C (the private PostgreSQL stops with it)");
        tokio::spawn(demo::run(database_url.clone(), base_url, demo_shutdown));
    }

    wait_for_signal().await;
    eprintln!("taskstream: shutting down (again to stop at once)");
    stop_demo.trigger();
    server.shutdown();
    tokio::select! {
        () = server.stopped() => {}
        () = wait_for_signal() => eprintln!("taskstream: stopping at once"),
    }
    if let Some(cluster) = cluster {
        let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let mut terminate =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler succeeds on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
