//! The chaos soak (`--soak 10m`, `--soak 30s` in CI): three instances on one database under a
//! mixed load, faults on a fixed schedule, then a ledger that every client's events equal the
//! committed rows of its task, in order, and that every task was seen to complete. The run
//! fails on the ledger, a crash or a hung drain, never on timing: latency is reported, and
//! every wait is either a fault's own or a generous bound that only a hang reaches.
//!
//! - [`schedule`]: which fault when; [`instances`]: the three processes and their memory;
//!   [`load`]: the writers and the task lifecycle; [`watcher`]: the clients;
//!   [`account`]: the ledger; [`report`]: the results.

mod account;
mod instances;
mod load;
mod report;
mod schedule;
mod watcher;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use taskstream::embedded_pg::Cluster;
use taskstream::live::pg_listener::APPLICATION_NAME as LISTEN_APPLICATION;
use tokio::time::Instant;

use crate::pg::{self, pg_error};
use instances::Instances;
use load::{Channel, Load, WriterPlan};
use report::{FaultRecord, SoakReport};
use schedule::Fault;
use watcher::{Behaviour, Shared};

/// How long the clients may take to receive everything once the writers completed every
/// task: only a client that is stuck (an event lost for good) reaches it.
const FINAL_WAIT: Duration = Duration::from_secs(120);

/// The writers: three groups of short tasks with three clients each (one steady, one that
/// reconnects on its own, one slow reader), completing and starting tasks as they go, and the
/// hot task's writer. The same in every run: only the length changes.
fn plans() -> Vec<WriterPlan> {
    let short = |w: usize, channel| WriterPlan {
        channel,
        prefix: format!("w{w}t"),
        slots: 6,
        rate: 30.0,
        lifetime: Some((15, 45)),
        watchers: vec![Behaviour::Steady, Behaviour::Reconnecting, Behaviour::Slow],
    };
    let mut hot = vec![Behaviour::Steady; 160];
    hot.extend([Behaviour::Reconnecting; 20]);
    hot.extend([Behaviour::Slow; 20]);
    vec![
        short(0, Channel::Sql),
        short(1, Channel::Sql),
        short(2, Channel::Http),
        WriterPlan {
            channel: Channel::Sql,
            prefix: load::HOT_TASK.trim_end_matches('0').to_owned(),
            slots: 1,
            rate: 20.0,
            lifetime: None,
            watchers: hot,
        },
    ]
}

/// Runs a soak that writes for `duration`; `Ok(false)` when the ledger or an instance failed.
pub async fn run(
    duration: Duration,
    server_bin: PathBuf,
    out: Option<PathBuf>,
    files: u64,
) -> Result<bool, String> {
    let label = humantime::format_duration(duration)
        .to_string()
        .replace(' ', "");
    let mut report = SoakReport::new(&label, duration, files, &server_bin);
    let (cluster, monitor) = crate::suite::private_database("soak").await?;
    let cluster = Arc::new(cluster);
    let db = monitor.create(0).await?;
    drop(monitor);
    let url = db.url.clone();
    let bin = server_bin.clone();
    let mut instances = tokio::task::block_in_place(|| Instances::start(bin, &url))?;
    let shared = Shared::new(instances.addrs());
    let load = Load::start(&url, &shared, plans());
    eprintln!("soak: 3 instances, writers and clients running; faults for {label}");

    let started = Instant::now();
    for (at, fault) in schedule::schedule(duration) {
        tokio::time::sleep_until(started + at).await;
        tokio::task::block_in_place(|| instances.check());
        shared.begin_fault();
        let began = Instant::now();
        let outcome = inject(
            fault,
            &cluster,
            &url,
            &mut instances,
            &shared,
            report.faults.len(),
        )
        .await;
        shared.end_fault();
        let record = FaultRecord::new(at, fault, began.elapsed(), outcome);
        eprintln!(
            "soak: {}",
            record.line(shared.delivered(), shared.started())
        );
        report.faults.push(record);
    }
    tokio::time::sleep_until(started + duration).await;
    eprintln!("soak: writers complete every task");
    report.writers = load.finish().await;
    let clients = shared.finish(Instant::now() + FINAL_WAIT).await;
    report.seconds = started.elapsed().as_secs_f64();
    tokio::task::block_in_place(|| instances.check());
    let client = pg::connect(&url).await?;
    let truth = account::truth(&client).await?;
    report.account = account::check(&truth, &clients);
    report.take_clients(&clients, &shared);
    report.committed = truth.values().map(|rows| rows.len() as u64).sum();
    tokio::task::block_in_place(|| instances.stop());
    report.failures.append(&mut instances.failures);
    report.instances = std::mem::take(&mut instances.incarnations);
    report.finish();
    report.publish(out)?;
    drop(cluster);
    Ok(report.passed())
}

/// Injects one fault; `Err` says why it could not be injected as planned (reported, and a
/// failure only if it is an instance that cannot be started again).
async fn inject(
    fault: Fault,
    cluster: &Arc<Cluster>,
    url: &str,
    instances: &mut Instances,
    shared: &Shared,
    number: usize,
) -> Result<String, String> {
    match fault {
        Fault::CutClients => {
            shared.cut_clients();
            Ok("a third of the clients cut at their next chunk".to_owned())
        }
        Fault::KillListenBackend => {
            let client = pg::connect(url).await?;
            let row = client
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = $1",
                    &[&LISTEN_APPLICATION],
                )
                .await
                .map_err(|e| pg_error(&e))?;
            Ok(format!(
                "{} LISTEN backends terminated",
                row.get::<_, i64>(0)
            ))
        }
        Fault::HoldTransaction => {
            load::hold_transaction(url, schedule::HOLD, number as u64).await?;
            Ok("committed after the hold".to_owned())
        }
        Fault::KillInstance => {
            tokio::task::block_in_place(|| instances.kill_and_restart())?;
            Ok(format!(
                "instance {} killed and restarted",
                instances::KILLED
            ))
        }
        Fault::DrainInstance => {
            tokio::task::block_in_place(|| instances.drain_and_restart())?;
            Ok(format!(
                "instance {} drained and restarted",
                instances::DRAINED
            ))
        }
        Fault::RestartPostgres => {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || {
                cluster.stop_server().map_err(|e| e.to_string())?;
                cluster.start_server().map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            Ok("stopped (fast) and started".to_owned())
        }
    }
}
