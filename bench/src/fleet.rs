//! A fleet of SSE clients: what they share (latency histograms, the writer's committed counts,
//! progress counters) and how a scenario drives them (wait until connected, until caught up;
//! drop every connection; resume; stop) and collects their reports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{self, ClientReport};
use crate::ledger::Tally;

/// Latency histograms are sharded so that 10,000 clients do not each hold one (~100 KiB) and
/// two runtime threads rarely wait on the same lock.
const LATENCY_SHARDS: usize = 16;

/// Highest latency recorded, in microseconds (an hour: anything slower saturates).
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Connections being opened at once. Opening is not what is measured; more than the listen
/// backlog at once would only add SYN retransmits (a one-second stall) to the figures.
const CONNECT_CONCURRENCY: usize = 256;

/// How often the waits below look at the counters. The figures themselves come from
/// timestamps taken by each client, not from this.
const WAIT_TICK: Duration = Duration::from_millis(5);

/// "Not known yet": the target of a session whose writer is still writing.
const UNKNOWN: u64 = u64::MAX;

/// What the clients are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Stay connected (reconnect with the last cursor if the stream ends).
    Run,
    /// Close the connection and wait.
    Drop,
    /// Close the connection and report.
    Stop,
}

/// One client's stream.
#[derive(Debug, Clone)]
pub struct Target {
    /// The request path of its stream.
    pub path: String,
    /// The index of its session (into the writer's committed counts).
    pub session: usize,
}

/// What every client of a fleet shares.
#[derive(Debug)]
pub struct Shared {
    /// The server.
    pub addr: SocketAddr,
    /// Whether clients record write-to-receive latency (not for replays of old events).
    pub record_latency: bool,
    /// Write-to-receive latency in microseconds.
    latency: Vec<Mutex<Histogram<u64>>>,
    /// Per session: the events the writer committed, once it is done ([`UNKNOWN`] before).
    committed: Vec<AtomicU64>,
    /// Bumped when `committed` changes, so that clients already level with it notice.
    pub targets: watch::Sender<u64>,
    /// (target generation, clients level with its targets).
    caught_up: Mutex<(u64, usize)>,
    /// Clients that received response headers at least once.
    connected: AtomicUsize,
    /// Bounds the connections being opened at once.
    pub connect_permits: Semaphore,
}

impl Shared {
    /// Records latencies (µs) measured by client `client`.
    pub fn record_latencies(&self, client: usize, latencies_us: &[u64]) {
        let mut histogram = self.latency[client % LATENCY_SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for &us in latencies_us {
            histogram.saturating_record(us.max(1));
        }
    }

    /// The committed count of `session`, [`UNKNOWN`] while the writer runs.
    pub fn committed(&self, session: usize) -> u64 {
        self.committed[session].load(Ordering::Acquire)
    }

    /// Counts a client level with the targets of generation `generation`.
    pub fn mark_caught_up(&self, generation: u64) {
        let mut caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if caught_up.0 == generation {
            caught_up.1 += 1;
        }
    }

    /// Counts a client's first successful response.
    pub fn mark_connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }
}

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
            latency: new_histogram(),
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

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
        .expect("1 ≤ low, high ≥ 2·low and 3 significant figures are valid bounds")
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
        let shared = Arc::new(Shared {
            addr,
            record_latency,
            latency: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
            committed: (0..sessions).map(|_| AtomicU64::new(UNKNOWN)).collect(),
            targets: watch::Sender::new(0),
            caught_up: Mutex::new((0, 0)),
            connected: AtomicUsize::new(0),
            connect_permits: Semaphore::new(CONNECT_CONCURRENCY),
        });
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
            let connected = self.shared.connected.load(Ordering::Relaxed);
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
        let mut caught_up = self
            .shared
            .caught_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (slot, &count) in self.shared.committed.iter().zip(committed) {
            slot.store(count, Ordering::Release);
        }
        let generation = *self.shared.targets.borrow() + 1;
        *caught_up = (generation, 0);
        drop(caught_up);
        self.shared.targets.send_replace(generation);
    }

    /// Waits until every client is level with the current targets; `Err` with the count
    /// reached on timeout.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let reached = self
                .shared
                .caught_up
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .1;
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
        let mut latency = new_histogram();
        for shard in &self.shared.latency {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            latency
                .add(&*shard)
                .expect("shards share the same bounds, so adding cannot fail");
        }
        let mut report = FleetReport {
            clients: each.len(),
            latency,
            ..FleetReport::empty()
        };
        for (id, client) in each.iter().enumerate() {
            let committed = match self.shared.committed(client.session) {
                UNKNOWN => 0,
                count => count,
            };
            let tally = client.ledger.tally(committed);
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
