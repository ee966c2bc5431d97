//! A fleet of SSE clients: how a scenario drives them (wait until connected, until caught up;
//! drop every connection; resume; stop) and collects their reports. What the clients share
//! (latency histograms, the writer's committed counts, progress counters) is
//! [`crate::shared`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{self, ClientReport, Phase, Target};
use crate::ledger::Tally;
use crate::shared::{Shared, UNKNOWN, latency_histogram};

/// How often the waits below look at the counters. The figures themselves come from
/// timestamps taken by each client, not from this.
const WAIT_TICK: Duration = Duration::from_millis(5);

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    control: watch::Sender<Phase>,
    clients: Vec<JoinHandle<ClientReport>>,
}

/// Everything the fleet's clients measured.
#[derive(Debug)]
pub struct FleetReport {
    /// Clients in the fleet.
    pub clients: usize,
    /// Their ledgers, added up.
    pub tally: Tally,
    /// The worst single client (most lost + duplicated), if any was not exact.
    pub worst: Option<(usize, Tally)>,
    /// Benchmark frames received, all clients.
    pub frames: u64,
    /// Body bytes received, all clients.
    pub bytes: u64,
    /// Connections re-opened after an unexpected end (not counting ordered drops).
    pub reconnects: u64,
    /// The first error a client met, if any.
    pub first_error: Option<String>,
    /// Write-to-receive latency, µs.
    pub latency: Histogram<u64>,
    /// Each client's report.
    pub each: Vec<ClientReport>,
}

impl FleetReport {
    /// A report of no clients, to merge others into.
    pub fn empty() -> FleetReport {
        FleetReport {
            clients: 0,
            tally: Tally::default(),
            worst: None,
            frames: 0,
            bytes: 0,
            reconnects: 0,
            first_error: None,
            latency: latency_histogram(),
            each: Vec::new(),
        }
    }

    /// Adds the clients of `other` (fleets run one after the other).
    pub fn merge(&mut self, other: FleetReport) {
        let offset = self.clients;
        self.clients += other.clients;
        self.tally.add(other.tally);
        if let Some((id, tally)) = other.worst
            && self
                .worst
                .is_none_or(|(_, w)| w.lost + w.duplicated < tally.lost + tally.duplicated)
        {
            self.worst = Some((offset + id, tally));
        }
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.reconnects += other.reconnects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency
            .add(&other.latency)
            .expect("every fleet histogram has the same bounds");
        self.each.extend(other.each);
    }
}

impl Fleet {
    /// Starts one client per target against `addr`; `sessions` is the number of sessions the
    /// targets point into.
    pub fn start(
        addr: SocketAddr,
        targets: Vec<Target>,
        sessions: usize,
        record_latency: bool,
    ) -> Fleet {
        let shared = Arc::new(Shared::new(addr, sessions, record_latency));
        let (control, _) = watch::channel(Phase::Run);
        let clients = targets
            .into_iter()
            .enumerate()
            .map(|(id, target)| {
                tokio::spawn(client::run(id, target, shared.clone(), control.subscribe()))
            })
            .collect();
        Fleet {
            shared,
            control,
            clients,
        }
    }

    /// The number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Waits until every client has had a response; `Err` with the count reached on timeout.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let connected = self.shared.connected();
            if connected >= self.clients.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(connected);
            }
            tokio::time::sleep(WAIT_TICK).await;
        }
    }

    /// Tells the clients how many events each session has: they are caught up when they
    /// have them all. Starts a new target generation.
    pub fn set_targets(&self, committed: &[u64]) {
        self.shared.set_targets(committed);
    }

    /// Waits until every client is level with the current targets; `Err` with the count
    /// reached on timeout.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let reached = self.shared.caught_up();
            if reached >= self.clients.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(reached);
            }
            tokio::time::sleep(WAIT_TICK).await;
        }
    }

    /// Every client closes its connection at once (and keeps its cursor).
    pub fn drop_connections(&self) {
        self.control.send_replace(Phase::Drop);
    }

    /// Every client reconnects at once with its cursor.
    pub fn resume(&self) {
        self.control.send_replace(Phase::Run);
    }

    /// Closes every connection and collects the reports.
    pub async fn stop(self) -> FleetReport {
        self.control.send_replace(Phase::Stop);
        let mut each = Vec::with_capacity(self.clients.len());
        for client in self.clients {
            match client.await {
                Ok(report) => each.push(report),
                Err(error) => panic!("a benchmark client panicked: {error}"),
            }
        }
        let mut report = FleetReport {
            clients: each.len(),
            latency: self.shared.latency(),
            ..FleetReport::empty()
        };
        for (id, client) in each.iter().enumerate() {
            let mut tally = Tally::default();
            for (&session, ledger) in client.sessions.iter().zip(&client.ledgers) {
                let committed = match self.shared.committed(session) {
                    UNKNOWN => 0,
                    count => count,
                };
                tally.add(ledger.tally(committed));
            }
            report.tally.add(tally);
            let badness = tally.lost + tally.duplicated;
            if badness > 0
                && report
                    .worst
                    .is_none_or(|(_, worst)| worst.lost + worst.duplicated < badness)
            {
                report.worst = Some((id, tally));
            }
            report.frames += client.frames;
            report.bytes += client.bytes;
            report.reconnects += client.reconnects;
            if report.first_error.is_none() {
                report.first_error.clone_from(&client.first_error);
            }
        }
        report.each = each;
        report
    }
}
