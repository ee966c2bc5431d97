//! What every client of a fleet shares: the server's address, the targets they race to (the
//! writer's committed counts), the progress counters the fleet waits on, and the latency
//! histograms they record into.
//!
//! It is its own module so that the clients and the fleet that drives them both depend on it,
//! and neither on the other's internals.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};

/// Latency histograms are sharded so that 10,000 clients do not each hold one (~100 KiB) and
/// two runtime threads rarely wait on the same lock.
const LATENCY_SHARDS: usize = 16;

/// Highest latency recorded, in microseconds (an hour: anything slower saturates).
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Connections being opened at once. Opening is not what is measured; more than the listen
/// backlog at once would only add SYN retransmits (a one-second stall) to the figures.
const CONNECT_CONCURRENCY: usize = 256;

/// "Not known yet": the target of a session whose writer is still writing.
pub const UNKNOWN: u64 = u64::MAX;

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
    /// The state of a fleet of clients of the server at `addr`, reading `sessions` sessions.
    pub fn new(addr: SocketAddr, sessions: usize, record_latency: bool) -> Shared {
        Shared {
            addr,
            record_latency,
            latency: (0..LATENCY_SHARDS)
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
            committed: (0..sessions).map(|_| AtomicU64::new(UNKNOWN)).collect(),
            targets: watch::Sender::new(0),
            caught_up: Mutex::new((0, 0)),
            connected: AtomicUsize::new(0),
            connect_permits: Semaphore::new(CONNECT_CONCURRENCY),
        }
    }

    /// Records latencies (µs) measured by client `client`.
    pub fn record_latencies(&self, client: usize, latencies_us: &[u64]) {
        let mut histogram = self.latency[client % LATENCY_SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for &us in latencies_us {
            histogram.saturating_record(us.max(1));
        }
    }

    /// Every latency recorded so far, in one histogram.
    pub fn latency(&self) -> Histogram<u64> {
        let mut latency = latency_histogram();
        for shard in &self.latency {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            latency
                .add(&*shard)
                .expect("shards share the same bounds, so adding cannot fail");
        }
        latency
    }

    /// The committed count of `session`, [`UNKNOWN`] while the writer runs.
    pub fn committed(&self, session: usize) -> u64 {
        self.committed[session].load(Ordering::Acquire)
    }

    /// Sets how many events each session has, and starts a new target generation in which no
    /// client is caught up yet.
    pub fn set_targets(&self, committed: &[u64]) {
        let mut caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (slot, &count) in self.committed.iter().zip(committed) {
            slot.store(count, Ordering::Release);
        }
        let generation = *self.targets.borrow() + 1;
        *caught_up = (generation, 0);
        drop(caught_up);
        self.targets.send_replace(generation);
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

    /// Clients level with the current targets.
    pub fn caught_up(&self) -> usize {
        self.caught_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
    }

    /// Counts a client's first successful response.
    pub fn mark_connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    /// Clients that had a response at least once.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }
}

/// An empty latency histogram (µs); every one of a fleet has these bounds, so they add up.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
        .expect("1 ≤ low, high ≥ 2·low and 3 significant figures are valid bounds")
}
