//! `--scaling`: how far writes go as instances are added (issue 14). PostgreSQL before 19
//! signals every listening backend on each NOTIFY commit, and every plain-mode instance
//! listens; so the write ceiling is measured with 1, 2, 4, 8 and 16 real instances on one
//! database (2 and 8 for issue 17's bus-mode target), each with live clients, in plain mode and in bus mode (NATS fan-out, at most two
//! PostgreSQL listeners), with event payloads and with address-only payloads, and the
//! notification queue's usage at the end of each. On one small machine the instances also take
//! CPU from PostgreSQL, so PostgreSQL alone is measured too: the same writers with N plain
//! LISTEN connections that drain (N = 0, 1, 4, 16, 64).
//!
//! Every client's ledger is checked as in the scenarios: a lost or duplicated event fails the
//! run. The figures themselves are reported, never asserted.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use taskstream::embedded_nats::NatsServer;
use taskstream::live::pg_listener::APPLICATION_NAME as LISTEN_APPLICATION;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::client::Target;
use crate::dbstats::{self, RunDb};
use crate::fleet::Fleet;
use crate::ledger::Tally;
use crate::peers::spawn_taskstream;
use crate::pg::pg_error;
use crate::process::terminate;
use crate::scenarios::write_all;
use crate::session::Session;
use crate::sysinfo::{self, Machine};
use crate::writer::{Pace, WriteSpec, Writer};

/// Instance counts measured.
const INSTANCES: [usize; 5] = [1, 2, 4, 8, 16];
/// LISTEN connections of the PostgreSQL-only sweep.
const LISTENERS: [usize; 5] = [0, 1, 4, 16, 64];
/// Writer connections, one session each, inserting as fast as they can.
const WRITERS: usize = 4;
/// Inserts in flight per writer.
const WINDOW: usize = 64;
/// Live clients per instance, each on one of the writers' sessions.
const CLIENTS_PER_INSTANCE: usize = 2;
/// How long each measurement writes.
const MEASURE: Duration = Duration::from_secs(5);
/// Measurements of each figure; the best is reported (a ceiling, on a machine whose other
/// work can only lower a figure).
const ROUNDS: usize = 2;
/// Pause after the instances and clients start (bus-mode seats are taken within about two
/// seconds) before measuring.
const SETTLE: Duration = Duration::from_secs(3);
/// PostgreSQL listener seats in bus mode (`--pg-listeners`, its default).
const PG_LISTENERS: usize = 2;
/// Each instance's pool: small, so that 16 instances stay within the cluster's connections.
const INSTANCE_ARGS: [&str; 4] = ["--pool-size", "4", "--max-replays", "2"];
/// The notification channel of events (see schema.sql).
const EVENTS_CHANNEL: &str = "taskstream_events";

/// One measurement with instances.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRun {
    /// `plain` or `bus`.
    pub mode: &'static str,
    /// Instances on the database.
    pub instances: usize,
    /// Backends of the instances' LISTEN connections whose last statement was a LISTEN, as
    /// `pg_stat_activity` shows them once the instances settled.
    pub listening: i64,
    /// Inserts/s with event payloads.
    pub writes_per_s_event: f64,
    /// Inserts/s with address-only payloads.
    pub writes_per_s_address: f64,
    /// `pg_notification_queue_usage()` after each (fraction of the 8 GB queue).
    pub queue_usage: [f64; 2],
    /// The live clients.
    pub clients: usize,
    /// Their ledgers.
    pub tally: Tally,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

/// One measurement of PostgreSQL alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListenerRun {
    /// Plain LISTEN connections draining.
    pub listeners: usize,
    /// Inserts/s.
    pub writes_per_s: f64,
    /// `pg_notification_queue_usage()` after it.
    pub queue_usage: f64,
}

/// The results.
#[derive(Debug, serde::Serialize)]
pub struct ScalingReport {
    command: String,
    machine: Machine,
    taskstream: String,
    postgres: String,
    loadavg_start: String,
    loadavg_end: String,
    writers: usize,
    seconds_per_measurement: f64,
    instances: Vec<InstanceRun>,
    listeners: Vec<ListenerRun>,
    bus_skipped: Option<String>,
}

/// Runs every measurement and writes the results; `Ok(false)` when a client's ledger failed.
pub async fn run(server_bin: PathBuf, out: Option<PathBuf>, files: u64) -> Result<bool, String> {
    let (cluster, monitor) = crate::suite::private_database("scaling").await?;
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string());
    let mut report = ScalingReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: sysinfo::machine(files),
        taskstream: crate::suite::taskstream_version(&server_bin),
        postgres: monitor.version().await.unwrap_or_else(|e| e),
        loadavg_start: sysinfo::loadavg(),
        loadavg_end: String::new(),
        writers: WRITERS,
        seconds_per_measurement: MEASURE.as_secs_f64(),
        instances: Vec::new(),
        listeners: Vec::new(),
        bus_skipped: nats.as_ref().err().cloned(),
    };
    let mut number = 0;
    for &listeners in &LISTENERS {
        let db = monitor.create(number).await?;
        number += 1;
        let run = listeners_run(&db, listeners).await?;
        eprintln!(
            "scaling: PostgreSQL alone, {listeners} LISTEN connections: {:.0} writes/s",
            run.writes_per_s
        );
        report.listeners.push(run);
        monitor.release(&db).await?;
    }
    let modes: Vec<(&'static str, Vec<String>)> = match &nats {
        Ok(nats) => vec![
            ("plain", Vec::new()),
            (
                "bus",
                vec![
                    "--nats-url".to_owned(),
                    nats.url(),
                    "--pg-listeners".to_owned(),
                    PG_LISTENERS.to_string(),
                ],
            ),
        ],
        Err(_) => vec![("plain", Vec::new())],
    };
    for (mode, args) in &modes {
        for &instances in &INSTANCES {
            let db = monitor.create(number).await?;
            number += 1;
            let run = instance_run(&db, &server_bin, mode, args, instances).await;
            eprintln!(
                "scaling: {mode} mode, {instances} instances: {:.0} writes/s (event payloads), \
                 {:.0} (address-only); queue {:?}; lost {}, dup {}{}",
                run.writes_per_s_event,
                run.writes_per_s_address,
                run.queue_usage,
                run.tally.lost,
                run.tally.duplicated,
                run.error
                    .as_ref()
                    .map_or(String::new(), |e| format!("; FAILED: {e}"))
            );
            report.instances.push(run);
            monitor.release(&db).await?;
        }
    }
    report.loadavg_end = sysinfo::loadavg();
    let ok = report
        .instances
        .iter()
        .all(|r| r.error.is_none() && r.tally.is_exact());
    report.publish(out)?;
    drop(nats);
    drop(monitor);
    drop(cluster);
    Ok(ok)
}

/// PostgreSQL alone: `listeners` connections LISTEN and drain while the writers write.
async fn listeners_run(db: &RunDb, listeners: usize) -> Result<ListenerRun, String> {
    let mut drains: Vec<JoinHandle<()>> = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..listeners {
        let (client, drain) = listen(&db.url).await?;
        clients.push(client);
        drains.push(drain);
    }
    let (mut writers, _) = writers(db).await?;
    let mut best = 0.0f64;
    for _ in 0..ROUNDS {
        best = best.max(write_all(&mut writers, measure()).await?.rate.round());
    }
    let queue_usage = queue_usage(writers[0].client()).await?;
    drop(clients);
    drains.iter().for_each(JoinHandle::abort);
    Ok(ListenerRun {
        listeners,
        writes_per_s: best,
        queue_usage,
    })
}

/// N instances, each with live clients, under the writers: event payloads, then address-only.
async fn instance_run(
    db: &RunDb,
    bin: &Path,
    mode: &'static str,
    args: &[String],
    instances: usize,
) -> InstanceRun {
    let mut run = InstanceRun {
        mode,
        instances,
        listening: 0,
        writes_per_s_event: 0.0,
        writes_per_s_address: 0.0,
        queue_usage: [0.0; 2],
        clients: instances * CLIENTS_PER_INSTANCE,
        tally: Tally::default(),
        error: None,
    };
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(INSTANCE_ARGS);
    let mut children: Vec<Child> = Vec::new();
    let mut fleets = Vec::new();
    let result = async {
        let (mut writers, sessions) = writers(db).await?;
        for i in 0..instances {
            let (child, addr, _) = tokio::task::block_in_place(|| {
                spawn_taskstream(bin, &db.url, "127.0.0.1:0", &args)
            })?;
            children.push(child);
            let targets = (0..CLIENTS_PER_INSTANCE)
                .map(|c| {
                    let session = (i * CLIENTS_PER_INSTANCE + c) % sessions.len();
                    Target {
                        path: format!("/tasks/{}/events/stream", sessions[session].task),
                        sessions: vec![session],
                        tasks: Vec::new(),
                    }
                })
                .collect();
            fleets.push(Fleet::start(addr, targets, sessions.len(), false));
        }
        for fleet in &fleets {
            fleet
                .wait_connected(Duration::from_secs(60))
                .await
                .map_err(|n| format!("only {n} clients of an instance connected"))?;
        }
        tokio::time::sleep(SETTLE).await;
        run.listening = listening(writers[0].client()).await?;
        for (payload, slot) in ["event", "address"]
            .repeat(ROUNDS)
            .into_iter()
            .zip([0, 1].repeat(ROUNDS))
        {
            writers[0]
                .client()
                .execute(
                    "UPDATE taskstream_notify_settings SET payload = $1",
                    &[&payload],
                )
                .await
                .map_err(|e| format!("set the payload mode: {}", pg_error(&e)))?;
            let written = write_all(&mut writers, measure()).await?;
            run.queue_usage[slot] = queue_usage(writers[0].client()).await?;
            let best = if slot == 0 {
                &mut run.writes_per_s_event
            } else {
                &mut run.writes_per_s_address
            };
            *best = best.max(written.rate.round());
        }
        let committed: Vec<u64> = writers.iter().map(|w| w.committed()[0]).collect();
        let frames: u64 = committed.iter().sum::<u64>() * CLIENTS_PER_INSTANCE as u64;
        let timeout = Duration::from_secs(60) + Duration::from_millis(frames / 10);
        for fleet in &fleets {
            fleet.set_targets(&committed);
        }
        for fleet in &fleets {
            fleet
                .wait_caught_up(timeout)
                .await
                .map_err(|n| format!("only {n} clients of an instance caught up"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    for fleet in fleets {
        run.tally.add(fleet.stop().await.tally);
    }
    for mut child in children {
        tokio::task::block_in_place(|| terminate(&mut child, Duration::from_secs(10)));
    }
    run.error = result.err();
    run
}

/// The writers, one session each (task `w<k>`), with their tasks created.
async fn writers(db: &RunDb) -> Result<(Vec<Writer>, Vec<Session>), String> {
    let mut writers = Vec::new();
    let mut sessions = Vec::new();
    for w in 0..WRITERS {
        let own = Arc::new(Session::many(&format!("w{w}"), 1));
        let writer = Writer::connect(&db.url, own.clone(), None).await?;
        dbstats::create_tasks(writer.client(), &own).await?;
        sessions.extend(own.iter().cloned());
        writers.push(writer);
    }
    Ok((writers, sessions))
}

fn measure() -> WriteSpec {
    WriteSpec {
        events: u64::MAX,
        duration: Some(MEASURE),
        pace: Pace::Max,
        window: WINDOW,
    }
}

/// A plain LISTEN connection whose notifications are read and dropped as they come.
async fn listen(url: &str) -> Result<(Client, JoinHandle<()>), String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect: {}", pg_error(&e)))?;
    // Awaiting the connection reads every message, notifications included, and drops them.
    let drain = tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
        .await
        .map_err(|e| format!("LISTEN: {}", pg_error(&e)))?;
    Ok((client, drain))
}

/// The instances' LISTEN backends that are listening (a bus-mode instance without a seat keeps
/// its connection without LISTEN).
async fn listening(client: &Client) -> Result<i64, String> {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND query ILIKE 'LISTEN%'",
            &[&LISTEN_APPLICATION],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| format!("count the LISTEN backends: {}", pg_error(&e)))
}

async fn queue_usage(client: &Client) -> Result<f64, String> {
    client
        .query_one("SELECT pg_notification_queue_usage()", &[])
        .await
        .map(|row| row.get(0))
        .map_err(|e| format!("read the queue usage: {}", pg_error(&e)))
}

/// A fraction of the notification queue as a percentage.
fn percent(usage: f64) -> String {
    format!("{:.4} %", usage * 100.0)
}

impl ScalingReport {
    fn publish(&self, out: Option<PathBuf>) -> Result<(), String> {
        let out = out.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
        let md = self.markdown();
        crate::report::write_pair(&out, "scaling", self, &md)?;
        println!("{md}");
        println!("scaling: results in {}/scaling.json, .md", out.display());
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "# Write ceiling against listening instances\n\n\
             - command: `{}`\n- taskstream: {}\n- PostgreSQL {}\n\
             - machine: {}, {} cores, {} MiB, {}; the cores are shared with other work on the \
             machine (load average at start {}, at end {}), and the instances, their clients \
             and the writers all run on them beside PostgreSQL\n\
             - {} writer connections, one session each, inserting as fast as they can (64 \
             inserts in flight each) for {} s per measurement; each figure is the best of \
             {ROUNDS}\n\n\
             ## PostgreSQL alone: N plain LISTEN connections that drain\n\n\
             | LISTEN connections | writes/s | notification queue used after |\n\
             |---:|---:|---:|\n",
            self.command,
            self.taskstream,
            self.postgres,
            self.machine.cpu_model,
            self.machine.cores,
            self.machine.memory_mib,
            self.machine.kernel,
            self.loadavg_start,
            self.loadavg_end,
            self.writers,
            self.seconds_per_measurement,
        );
        for r in &self.listeners {
            md.push_str(&format!(
                "| {} | {:.0} | {} |\n",
                r.listeners,
                r.writes_per_s,
                percent(r.queue_usage)
            ));
        }
        md.push_str(&format!(
            "\n## Instances, each with {CLIENTS_PER_INSTANCE} live clients\n\n\
             | mode | instances | LISTEN backends | writes/s, event payloads | writes/s, \
             address-only | queue used after (event / address) | lost | dup | error |\n\
             |---|---:|---:|---:|---:|---|---:|---:|---|\n"
        ));
        for r in &self.instances {
            md.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.0} | {} / {} | {} | {} | {} |\n",
                r.mode,
                r.instances,
                r.listening,
                r.writes_per_s_event,
                r.writes_per_s_address,
                percent(r.queue_usage[0]),
                percent(r.queue_usage[1]),
                r.tally.lost,
                r.tally.duplicated,
                r.error.as_deref().unwrap_or("")
            ));
        }
        if let Some(why) = &self.bus_skipped {
            md.push_str(&format!("\nBus mode was not measured: {why}\n"));
        }
        md
    }
}
