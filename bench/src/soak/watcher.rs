//! One soak client: watches one task's stream on one of the instances, keeps every event index
//! it received (the ledger compares them with the table at the end), and survives whatever the
//! faults do to its connection: it moves to the next instance and resumes with
//! `Last-Event-ID`, as a browser's EventSource behind a load balancer would. It ends when it
//! has seen the task's `complete`, or when the run gives up waiting.
//!
//! What all clients share (the instances, the fault signals, the latency histogram) is
//! [`Shared`]; the clients of a task are started with [`spawn`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{open, stream_request};
use crate::payload::unix_nanos;
use crate::shared::latency_histogram;
use crate::sse::{Frame, SseReader};

/// First pause before reconnecting after a failure; doubled up to [`RECONNECT_MAX`]. The next
/// attempt goes to the next instance, so a dead one costs one short pause.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Longest wait for response headers: a request stuck behind a fault is retried elsewhere.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence on an open stream (keep-alives come every few seconds) before the client
/// treats the connection as dead, as a half-open TCP connection would be.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a slow reader sleeps after each chunk it reads.
const SLOW_READ_PAUSE: Duration = Duration::from_millis(40);
/// A self-reconnecting client drops its connection after between these many milliseconds.
const OWN_RECONNECT_MS: (u64, u64) = (500, 4_000);
/// One client in this many is cut by each cut fault (which ones changes with every cut).
const CUT_SHARE: usize = 3;
/// Latency is recorded again only for events written this long after a fault ended.
const QUIET_AFTER_FAULT: Duration = Duration::from_secs(2);

/// How a client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Stays connected; reconnects only when the connection fails.
    Steady,
    /// Also drops its connection on its own every few seconds and resumes by cursor.
    Reconnecting,
    /// Reads slowly, so that the server's slow-client path runs.
    Slow,
}

/// What every soak client shares.
#[derive(Debug)]
pub struct Shared {
    /// The instances, in the order clients move through them.
    pub instances: Vec<SocketAddr>,
    /// Bumped by the cut fault: the clients it chooses cut their connection mid-frame.
    cuts: watch::Sender<u64>,
    /// Set when the run stops waiting: every client reports what it has.
    stop: watch::Sender<bool>,
    /// Write-to-receive latency (µs) of events written and received while no fault ran, at
    /// the clients that are not slow readers.
    latency: Mutex<Histogram<u64>>,
    /// Whether a fault is being injected now.
    fault_active: AtomicBool,
    /// Events written before this (Unix ns) are not timed: a fault may have delayed them.
    quiet_from_ns: AtomicU64,
    /// Events received, all clients.
    delivered: AtomicU64,
    /// The clients, as started.
    clients: Mutex<Vec<JoinHandle<WatcherReport>>>,
    /// The id of the next client.
    next_id: AtomicUsize,
}

/// What one client saw.
#[derive(Debug, Clone)]
pub struct WatcherReport {
    /// The task it watched.
    pub task: String,
    /// How it behaved.
    pub behaviour: Behaviour,
    /// Every event index it received, in order.
    pub received: Vec<u64>,
    /// Whether it received the task's `complete`.
    pub completed: bool,
    /// Connections re-opened because one failed or ended without `complete`.
    pub reconnects: u64,
    /// Connections it dropped on its own schedule.
    pub own_reconnects: u64,
    /// Connections it cut mid-frame.
    pub cuts: u64,
    /// The first failure it met, if any.
    pub first_error: Option<String>,
}

impl Shared {
    /// The state of the clients of `instances`.
    pub fn new(instances: Vec<SocketAddr>) -> Arc<Shared> {
        Arc::new(Shared {
            instances,
            cuts: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            latency: Mutex::new(latency_histogram()),
            fault_active: AtomicBool::new(false),
            quiet_from_ns: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            clients: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(0),
        })
    }

    /// A fault starts: latency stops being recorded.
    pub fn begin_fault(&self) {
        self.fault_active.store(true, Ordering::Release);
    }

    /// The fault is over: latency is recorded again for events written a little later.
    pub fn end_fault(&self) {
        let quiet = unix_nanos() + QUIET_AFTER_FAULT.as_nanos() as u64;
        self.quiet_from_ns.store(quiet, Ordering::Release);
        self.fault_active.store(false, Ordering::Release);
    }

    /// Cuts a share of the clients mid-frame (at their next chunk).
    pub fn cut_clients(&self) {
        self.cuts.send_modify(|generation| *generation += 1);
    }

    /// Events received so far, all clients.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Clients started so far.
    pub fn started(&self) -> usize {
        self.next_id.load(Ordering::Relaxed)
    }

    /// The latency recorded between faults.
    pub fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until every client started so far has ended, or `deadline` passes; then tells
    /// the rest to stop and collects every report.
    pub async fn finish(&self, deadline: tokio::time::Instant) -> Vec<WatcherReport> {
        let handles = std::mem::take(
            &mut *self
                .clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        while tokio::time::Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop.send_replace(true);
        let mut reports = Vec::with_capacity(handles.len());
        for handle in handles {
            match handle.await {
                Ok(report) => reports.push(report),
                Err(error) => panic!("a soak client panicked: {error}"),
            }
        }
        reports
    }

    fn record(&self, written_at_ns: u64, arrived_ns: u64) {
        if self.fault_active.load(Ordering::Acquire)
            || written_at_ns < self.quiet_from_ns.load(Ordering::Acquire)
        {
            return;
        }
        let us = arrived_ns.saturating_sub(written_at_ns) / 1_000;
        self.latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .saturating_record(us.max(1));
    }
}

/// Starts one client of `task` per behaviour.
pub fn spawn(shared: &Arc<Shared>, task: &str, behaviours: &[Behaviour]) {
    let mut clients = shared
        .clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for &behaviour in behaviours {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let watcher = Watcher {
            id,
            path: format!("/tasks/{task}/events/stream"),
            shared: shared.clone(),
            reader: SseReader::default(),
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
            report: WatcherReport {
                task: task.to_owned(),
                behaviour,
                received: Vec::new(),
                completed: false,
                reconnects: 0,
                own_reconnects: 0,
                cuts: 0,
                first_error: None,
            },
        };
        clients.push(tokio::spawn(watcher.run()));
    }
}

/// Why one connection ended.
enum Ended {
    /// The task completed (or the run stopped): the client is done.
    Done,
    /// It failed, or ended without `complete`: try the next instance.
    Failed(String),
    /// The client dropped it on its own schedule: resume on the next instance.
    Own,
    /// The client cut it mid-frame: resume.
    Cut,
}

/// A deterministic xorshift generator: every run draws the same schedules.
struct Rng(u64);

impl Rng {
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low).max(1)
    }
}

struct Watcher {
    id: usize,
    path: String,
    shared: Arc<Shared>,
    reader: SseReader,
    rng: Rng,
    report: WatcherReport,
}

impl Watcher {
    async fn run(mut self) -> WatcherReport {
        let mut stop = self.shared.stop.subscribe();
        let mut instance = self.id % self.shared.instances.len();
        let mut backoff = RECONNECT_MIN;
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let ended = tokio::select! {
                ended = self.connection(self.shared.instances[instance]) => ended,
                _ = stop.changed() => Ended::Done,
            };
            self.reader.connection_ended();
            match ended {
                Ended::Done => break,
                Ended::Failed(error) => {
                    self.report.reconnects += 1;
                    self.report.first_error.get_or_insert(error);
                    instance = (instance + 1) % self.shared.instances.len();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
                Ended::Own => {
                    self.report.own_reconnects += 1;
                    instance = (instance + 1) % self.shared.instances.len();
                    backoff = RECONNECT_MIN;
                }
                Ended::Cut => {
                    self.report.cuts += 1;
                    backoff = RECONNECT_MIN;
                }
            }
        }
        self.report
    }

    /// One connection to `addr`, read until it ends.
    async fn connection(&mut self, addr: SocketAddr) -> Ended {
        let (mut sender, connection) = match open(addr).await {
            Ok(pair) => pair,
            Err(error) => return Ended::Failed(error),
        };
        tokio::pin!(connection);
        let request = match stream_request(addr, &self.path, self.reader.last_id()) {
            Ok(request) => request,
            Err(error) => return Ended::Failed(error),
        };
        let response = tokio::select! {
            response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request)) => {
                match response {
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) => return Ended::Failed(format!("request: {error}")),
                    Err(_) => return Ended::Failed("no response headers in time".to_owned()),
                }
            }
            ended = &mut connection => {
                return Ended::Failed(format!("connection ended before the response: {ended:?}"));
            }
        };
        match response.status() {
            hyper::StatusCode::OK => {}
            // Only a cursor with the completion mark gets 204: the task is over.
            hyper::StatusCode::NO_CONTENT => return Ended::Done,
            status => return Ended::Failed(format!("status {status}")),
        }
        let mut body = response.into_body();
        let mut cuts = self.shared.cuts.subscribe();
        cuts.borrow_and_update();
        let mut cut_pending = false;
        let own_deadline = match self.report.behaviour {
            Behaviour::Reconnecting => {
                let (low, high) = OWN_RECONNECT_MS;
                Some(Duration::from_millis(self.rng.between(low, high)))
            }
            Behaviour::Steady | Behaviour::Slow => None,
        };
        let own = tokio::time::sleep(own_deadline.unwrap_or(Duration::MAX / 4));
        tokio::pin!(own);
        loop {
            tokio::select! {
                frame = tokio::time::timeout(SILENCE_TIMEOUT, body.frame()) => match frame {
                    Ok(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else { continue };
                        if cut_pending && data.len() >= 2 {
                            self.chunk(&data[..data.len() / 2]);
                            return Ended::Cut;
                        }
                        self.chunk(&data);
                        if self.report.completed {
                            return Ended::Done;
                        }
                        if self.report.behaviour == Behaviour::Slow {
                            tokio::time::sleep(SLOW_READ_PAUSE).await;
                        }
                    }
                    Ok(Some(Err(error))) => return Ended::Failed(format!("body: {error}")),
                    Ok(None) => return Ended::Failed("the stream ended without complete".into()),
                    Err(_) => return Ended::Failed("the stream fell silent".to_owned()),
                },
                ended = &mut connection => {
                    return Ended::Failed(format!("connection ended: {ended:?}"));
                }
                changed = cuts.changed() => {
                    if changed.is_ok() {
                        let generation = *cuts.borrow_and_update() as usize;
                        cut_pending |= (self.id + generation).is_multiple_of(CUT_SHARE);
                    }
                }
                () = &mut own, if own_deadline.is_some() => return Ended::Own,
            }
        }
    }

    fn chunk(&mut self, data: &[u8]) {
        let arrived_ns = unix_nanos();
        let report = &mut self.report;
        let shared = &self.shared;
        // A slow reader's delay is its own: the latency figure is that of clients that read.
        let timed = report.behaviour != Behaviour::Slow;
        let mut delivered = 0;
        self.reader.feed(data, |frame| match frame {
            Frame::Bench(_, event) => {
                report.received.push(event.index);
                delivered += 1;
                if timed {
                    shared.record(event.written_at_ns, arrived_ns);
                }
            }
            Frame::Complete => report.completed = true,
            Frame::Other => {}
        });
        shared.delivered.fetch_add(delivered, Ordering::Relaxed);
    }
}
