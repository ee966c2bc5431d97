//! The hub: one shared tail per watched task, fed by the LISTEN connection and the poll timer.
//!
//! Every client of a task subscribes to that task's tail (created on the first subscription,
//! dropped with the last). The tail follows the task's latest session, turns each new event
//! into SSE bytes once, and broadcasts the same `Bytes` to every subscriber. Notifications are
//! routed here by [`Hub::notify`]; the poll timer runs one batched query for the positions of
//! all watched tasks per tick and hands each tail its observation. How a tail reacts lives in
//! [`crate::live::tail`]; how a client uses its subscription lives in [`crate::client_stream`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::MissedTickBehavior;

use crate::db::{Db, Session, TaskPosition};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::live::tail::{self, TailMsg};

/// Messages a tail keeps for its subscribers. A subscriber that falls further behind than this
/// is told it lagged and catches up from the table, so memory per tail stays bounded however
/// slow its clients are. Each slot costs about 50 bytes while empty.
pub const LIVE_CAPACITY: usize = 256;

/// Messages queued for one tail before it is told to re-read its position instead.
const INBOX_CAPACITY: usize = 256;

/// Tasks per batched position query of the poll.
const POLL_CHUNK: usize = 2000;

/// What a tail broadcasts to its subscribers.
#[derive(Debug, Clone)]
pub enum Live {
    /// A committed event, already encoded.
    Event(Arc<LiveEvent>),
    /// The tail moved its head to `seq` of `session` without publishing the events before it
    /// (it had just started, or fell too far behind): a subscriber short of it catches up.
    Advanced {
        /// The session of the new head.
        session: Arc<Session>,
        /// The new head.
        seq: i64,
    },
    /// The task is no longer `InProgress` (or is gone); `head` is the last event the tail
    /// published. A subscriber exactly there completes; one behind catches up first.
    Complete {
        /// Session and seq of the tail's last event, `None` if the task had no session.
        head: Option<(Arc<Session>, i64)>,
    },
}

/// One event as every subscriber of a tail receives it.
#[derive(Debug)]
pub struct LiveEvent {
    /// The session the event belongs to.
    pub session: Arc<Session>,
    /// Its position in that session.
    pub seq: i64,
    /// The whole SSE frame.
    pub frame: Bytes,
    /// When its notification arrived (for the notification-to-send latency), if it came from
    /// one rather than from a table read.
    pub notified_at: Option<Instant>,
}

/// A notification, parsed (see `schema.sql` for the payloads).
#[derive(Debug)]
pub enum Notice {
    /// An event was committed.
    Event {
        /// Its task.
        task: String,
        /// Its session.
        session: String,
        /// Its seq.
        seq: i64,
        /// Type and content, when they fit in the payload.
        body: Option<(String, String)>,
        /// When the notification arrived.
        at: Instant,
    },
    /// A task's status changed or the task was deleted.
    TaskChanged {
        /// The task.
        task: String,
    },
    /// Something changed that the payload could not name: re-check every task.
    Unknown,
}

/// The hub. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    /// The tails by task id. Held only for map operations and `try_send`s, never across await.
    tails: Mutex<HashMap<Arc<str>, TailEntry>>,
    /// Where tails read rows.
    db: Db,
    /// Rows per tail read.
    batch: i64,
    /// Counters (live tails).
    metrics: Arc<Metrics>,
    /// Wakes the poller before its next tick (LISTEN reconnected, or an unaddressed notice).
    poll_now: Notify,
}

/// The hub's handle on one running tail.
#[derive(Debug)]
struct TailEntry {
    /// The tail task's queue.
    inbox: mpsc::Sender<TailMsg>,
    /// Set when a message could not be queued: the tail re-reads its position after the
    /// messages it has.
    resync: Arc<Resync>,
    /// Where subscribers get receivers from.
    live: broadcast::Sender<Live>,
    /// Open subscriptions; the entry is removed when it drops to zero, ending the tail task.
    subscribers: usize,
}

/// A client's place on a tail. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    /// What the tail publishes from the moment of subscribing.
    pub live: broadcast::Receiver<Live>,
    hub: Arc<HubInner>,
    task_id: Arc<str>,
}

impl Hub {
    /// A hub whose tails read from `db`, `batch` rows at a time.
    pub fn new(db: Db, batch: i64, metrics: Arc<Metrics>) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                tails: Mutex::new(HashMap::new()),
                db,
                batch,
                metrics,
                poll_now: Notify::new(),
            }),
        }
    }

    /// Subscribes to the task's tail, starting it if it is the first subscription. Everything
    /// the tail publishes from now on reaches the returned receiver.
    pub fn subscribe(&self, task_id: &str) -> Subscription {
        let task_id: Arc<str> = Arc::from(task_id);
        let mut tails = self.inner.lock();
        let entry = tails.entry(task_id.clone()).or_insert_with(|| {
            self.inner.metrics.live_tails.inc();
            self.start_tail(task_id.clone())
        });
        entry.subscribers += 1;
        Subscription {
            live: entry.live.subscribe(),
            hub: self.inner.clone(),
            task_id,
        }
    }

    /// Routes a notification to the tail it concerns (if the task is watched here).
    pub fn notify(&self, notice: Notice) {
        let (task, msg) = match notice {
            Notice::Event {
                task,
                session,
                seq,
                body,
                at,
            } => (
                task,
                TailMsg::Event {
                    session,
                    seq,
                    body,
                    at,
                },
            ),
            Notice::TaskChanged { task } => (task, TailMsg::Reread),
            Notice::Unknown => return self.poll_now(),
        };
        let tails = self.inner.lock();
        if let Some(entry) = tails.get(task.as_str()) {
            entry.send(msg);
        }
    }

    /// Makes the poller check every watched task now: after a LISTEN reconnect, notifications
    /// sent while it was down are lost.
    pub fn poll_now(&self) {
        self.inner.poll_now.notify_one();
    }

    /// The number of tails (watched tasks).
    pub fn tail_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// The safety net: every `interval` (or when woken), one batched query for the positions
    /// of every watched task, and each tail gets its observation. Runs until `shutdown`.
    pub async fn run_poller(self, interval: Duration, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.inner.poll_now.notified() => {}
                _ = shutdown.wait() => return,
            }
            self.poll_once().await;
        }
    }

    async fn poll_once(&self) {
        let watched: Vec<Arc<str>> = self.inner.lock().keys().cloned().collect();
        for chunk in watched.chunks(POLL_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|id| &**id).collect();
            let mut found: HashMap<String, TaskPosition> = match self.inner.db.positions(&ids).await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(error) => {
                    tracing::warn!(%error, "poll failed; retrying at the next tick");
                    return;
                }
            };
            let tails = self.inner.lock();
            for id in chunk {
                if let Some(entry) = tails.get(id) {
                    entry.send(TailMsg::Observed(found.remove(&**id)));
                }
            }
        }
    }

    fn start_tail(&self, task_id: Arc<str>) -> TailEntry {
        let (inbox, queue) = mpsc::channel(INBOX_CAPACITY);
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let resync = Arc::new(Resync::default());
        tokio::spawn(tail::run(
            task_id,
            self.inner.db.clone(),
            self.inner.batch,
            queue,
            resync.clone(),
            live.clone(),
        ));
        TailEntry {
            inbox,
            resync,
            live,
            subscribers: 0,
        }
    }
}

impl HubInner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, TailEntry>> {
        // A panic while holding this lock cannot leave the map half-updated (every critical
        // section is a single map operation), so a poisoned lock is still consistent.
        self.tails
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TailEntry {
    fn send(&self, msg: TailMsg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inbox.try_send(msg) {
            self.resync.request();
        }
    }
}

/// A tail's "re-read your position" flag: set when a message for it had to be dropped.
#[derive(Debug, Default)]
pub struct Resync {
    requested: AtomicBool,
    wake: Notify,
}

impl Resync {
    /// Asks for a re-read and wakes the tail if it is idle.
    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether a re-read was asked for since the last call.
    pub fn take(&self) -> bool {
        self.requested.swap(false, Ordering::AcqRel)
    }

    /// Resolves after [`Resync::request`] (at once if one is pending).
    pub async fn requested(&self) {
        self.wake.notified().await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut tails = self.hub.lock();
        if let Some(entry) = tails.get_mut(&self.task_id) {
            entry.subscribers -= 1;
            if entry.subscribers == 0 {
                tails.remove(&self.task_id);
                self.hub.metrics.live_tails.dec();
            }
        }
    }
}
