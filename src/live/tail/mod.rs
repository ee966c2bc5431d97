//! One task's live tail: follows the task's latest session and publishes each new event once,
//! already encoded, to every subscriber.
//!
//! Notifications arrive after commit, in commit order, and `seq` grows in commit order within
//! a session, so a notification whose seq is exactly the tail's + 1 and that carries its
//! content is published without any query. Anything else — a gap, a payload without content,
//! another session, a status change, a dropped message — makes the tail re-read its position
//! and the rows after it. The table stays the source of truth. The decisions are in [`plan`];
//! this module owns the tail's task, its channels and the handle the hub keeps.

mod plan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc};

use self::plan::{Head, LargeFrames, Notified, OnEvent, Step};
use crate::db::{Db, DbError, PageLimit, Session, TaskPosition};
use crate::live::notice::NotifiedEvent;
use crate::wire::event::{self, Encoded};

/// Messages a tail keeps for its subscribers. A subscriber that falls further behind than this
/// is told it lagged and catches up from the table, so memory per tail stays bounded however
/// slow its clients are. Each slot costs about 50 bytes while empty.
const LIVE_CAPACITY: usize = 256;

/// The most rows a tail reads and publishes to catch up. Beyond it, subscribers could not take
/// them from the ring anyway: the tail moves its head and they read the table themselves.
const MAX_TAIL_READ: i64 = LIVE_CAPACITY as i64 / 2;

/// Messages queued for a tail before it is told to re-read its position instead.
const INBOX_CAPACITY: usize = 256;

/// What a tail broadcasts to its subscribers.
#[derive(Debug, Clone)]
pub(crate) enum Live {
    /// A committed event, already encoded.
    Event(Arc<LiveEvent>),
    /// The tail moved its head to `seq` of `session` without publishing the events before it
    /// (it had just started, or fell too far behind): a subscriber short of it catches up.
    Advanced { session: Arc<Session>, seq: i64 },
    /// The task is no longer `InProgress` (or is gone); `head` is the last event the tail
    /// published (`None` if the task had no session). A subscriber exactly there completes;
    /// one behind catches up first. `status` is the status it left `InProgress` for (`None`:
    /// deleted).
    Complete {
        head: Option<(Arc<Session>, i64)>,
        status: Option<Arc<str>>,
    },
}

/// One event as every subscriber of a tail receives it.
#[derive(Debug)]
pub(crate) struct LiveEvent {
    pub(crate) session: Arc<Session>,
    pub(crate) seq: i64,
    /// The whole single-task SSE frame, and where its parts are.
    pub(crate) encoded: Encoded,
    /// The body of its multi-task frame, made by the first multi-task subscriber that needs it
    /// and shared by the others.
    pub(crate) tagged: OnceLock<Bytes>,
    /// When its notification arrived (for the notification-to-send latency), if it came from
    /// one rather than from a table read.
    pub(crate) notified_at: Option<Instant>,
}

/// The hub's handle on a running tail: where its messages go and where subscribers get their
/// receivers. Dropping it ends the tail task.
#[derive(Debug)]
pub(crate) struct TailHandle {
    inbox: mpsc::Sender<TailMsg>,
    /// Set when a message could not be queued: the tail re-reads its position after the
    /// messages it has.
    resync: Arc<Resync>,
    live: broadcast::Sender<Live>,
}

/// What the hub sends a tail.
#[derive(Debug)]
enum TailMsg {
    Event(NotifiedEvent),
    /// The task's status changed or it was deleted: re-read, then complete if it ended.
    Reread,
    /// The poll's observation of the task (`None`: it no longer exists).
    Observed(Option<TaskPosition>),
}

/// Starts the tail of `task_id`, which reads rows from `db`, within `limit` at a time (whose
/// bytes also bound the large frames its ring holds for subscribers that have not read them).
pub(crate) fn spawn(task_id: Arc<str>, db: Db, limit: PageLimit) -> TailHandle {
    let (inbox, queue) = mpsc::channel(INBOX_CAPACITY);
    let (live, _) = broadcast::channel(LIVE_CAPACITY);
    let resync = Arc::new(Resync::default());
    let tail = Tail {
        task_id,
        db,
        limit,
        live: live.clone(),
        head: None,
        large: LargeFrames::default(),
    };
    tokio::spawn(tail.run(queue, resync.clone()));
    TailHandle {
        inbox,
        resync,
        live,
    }
}

impl TailHandle {
    /// A receiver of everything the tail publishes from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.live.subscribe()
    }

    /// An event of this task was notified.
    pub(crate) fn event(&self, event: NotifiedEvent) {
        self.send(TailMsg::Event(event));
    }

    /// The task's status changed, or it was deleted. At most one such re-read is queued at a
    /// time: it covers every change notified before it runs, and a flood of replayed task
    /// notifications then costs one read at a time, not one per notification.
    pub(crate) fn reread(&self) {
        if self.resync.reread_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.inbox.try_send(TailMsg::Reread).is_err() {
            self.resync.reread_queued.store(false, Ordering::Release);
            self.resync.request();
        }
    }

    /// The poll observed the task at `position` (`None`: it no longer exists).
    pub(crate) fn observed(&self, position: Option<TaskPosition>) {
        self.send(TailMsg::Observed(position));
    }

    /// Never waits (the hub calls it under its lock): a full queue asks for a re-read instead,
    /// which covers whatever the dropped message said.
    fn send(&self, msg: TailMsg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inbox.try_send(msg) {
            self.resync.request();
        }
    }
}

/// A tail's "re-read your position" flags.
#[derive(Debug, Default)]
struct Resync {
    requested: AtomicBool,
    wake: Notify,
    /// A [`TailMsg::Reread`] is in the inbox.
    reread_queued: AtomicBool,
}

impl Resync {
    /// Asks for a re-read and wakes the tail if it is idle.
    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether a re-read was asked for since the last call.
    fn take(&self) -> bool {
        self.requested.swap(false, Ordering::AcqRel)
    }
}

/// Where a notified event is, for the plan.
fn notified(event: &NotifiedEvent) -> Notified<'_> {
    Notified {
        session: &event.session,
        started_at: event.started_at,
        seq: event.seq,
    }
}

/// The state of one tail task.
struct Tail {
    task_id: Arc<str>,
    db: Db,
    /// How much one read may return.
    limit: PageLimit,
    live: broadcast::Sender<Live>,
    /// `None` until the first position read: a new tail publishes nothing until it knows where
    /// it stands.
    head: Option<Head>,
    /// The large frames in the ring that a subscriber may not have read yet.
    large: LargeFrames,
}

impl Tail {
    /// Runs until the hub drops the handle (the task's last subscriber left).
    async fn run(mut self, mut queue: mpsc::Receiver<TailMsg>, resync: Arc<Resync>) {
        loop {
            tokio::select! {
                biased;
                msg = queue.recv() => match msg {
                    Some(msg) => {
                        if matches!(msg, TailMsg::Reread) {
                            resync.reread_queued.store(false, Ordering::Release);
                        }
                        self.handle(msg).await;
                    }
                    None => return,
                },
                () = resync.wake.notified() => {}
            }
            if resync.take() {
                self.reread().await;
            }
        }
    }

    async fn handle(&mut self, msg: TailMsg) {
        match msg {
            TailMsg::Event(event) => {
                let has_body = event.body.is_some();
                match plan::on_event(self.head.as_ref(), notified(&event), has_body) {
                    OnEvent::ReadFirstPosition => self.first_notification(event).await,
                    OnEvent::Ignore => {}
                    OnEvent::Publish(session) => {
                        if let Some((event_type, content)) = &event.body {
                            self.publish(session, event.seq, event_type, content, Some(event.at));
                        }
                    }
                    OnEvent::Reread => self.reread().await,
                }
            }
            TailMsg::Reread => self.reread().await,
            TailMsg::Observed(position) => self.apply(position).await,
        }
    }

    /// The first notification a new tail receives: one position query (for the session's start
    /// time) however many clients are waiting, then the event (see [`plan::first_head`]).
    async fn first_notification(&mut self, event: NotifiedEvent) {
        let position = match self.db.position(&self.task_id).await {
            Ok(position) => position,
            Err(error) => return self.read_failed(&error),
        };
        let Some(head) = plan::first_head(position.as_ref(), notified(&event)) else {
            return self.apply(position).await;
        };
        let session = head.session.clone();
        self.head = Some(head);
        if let Some(session) = session {
            match &event.body {
                Some((event_type, content)) => {
                    self.publish(session, event.seq, event_type, content, Some(event.at));
                }
                None => {
                    if let Err(error) = self.publish_rows(session).await {
                        self.read_failed(&error);
                    }
                }
            }
        }
        if let Some(position) = position.filter(|p| !p.in_progress()) {
            self.publish_complete(Some(&position.status));
        }
    }

    /// Reads the task's position and catches up with it. On a database error the tail keeps
    /// its state: the next poll tick observes the position again.
    async fn reread(&mut self) {
        match self.db.position(&self.task_id).await {
            Ok(position) => self.apply(position).await,
            Err(error) => self.read_failed(&error),
        }
    }

    /// Catches up with an observed position (see [`plan::catch_up`]).
    async fn apply(&mut self, position: Option<TaskPosition>) {
        let catchup = plan::catch_up(self.head.as_ref(), position.as_ref(), MAX_TAIL_READ);
        match catchup.step {
            Step::Stay => {}
            Step::NoSession => {
                self.head.get_or_insert(Head {
                    session: None,
                    seq: 0,
                });
            }
            Step::Advance(session, seq) => {
                self.head = Some(Head {
                    session: Some(session.clone()),
                    seq,
                });
                self.broadcast(Live::Advanced { session, seq });
            }
            Step::Read(from) => {
                let session = from.session.clone();
                self.head = Some(from);
                if let Some(session) = session
                    && let Err(error) = self.publish_rows(session).await
                {
                    return self.read_failed(&error);
                }
            }
        }
        if catchup.complete {
            self.publish_complete(position.as_ref().map(|p| p.status.as_str()));
        }
    }

    /// Publishes every stored row of `session` past the head, a batch at a time.
    async fn publish_rows(&mut self, session: Arc<Session>) -> Result<(), DbError> {
        loop {
            let after = self.head.as_ref().map_or(0, |head| head.seq);
            let page = self.db.events(&session.id, after, self.limit).await?;
            for row in page.rows {
                self.publish(
                    session.clone(),
                    row.seq,
                    &row.event_type,
                    &row.content,
                    None,
                );
            }
            if !page.more {
                return Ok(());
            }
        }
    }

    fn publish(
        &mut self,
        session: Arc<Session>,
        seq: i64,
        event_type: &str,
        content: &str,
        notified_at: Option<Instant>,
    ) {
        let encoded = event::encode(&session.cursor(seq), event_type, content);
        self.head = Some(Head {
            session: Some(session.clone()),
            seq,
        });
        if self
            .large
            .admit(encoded.frame.len(), self.live.len(), self.limit.bytes)
        {
            self.broadcast(Live::Event(Arc::new(LiveEvent {
                session,
                seq,
                encoded,
                tagged: OnceLock::new(),
                notified_at,
            })));
        } else {
            // The ring already holds as many large frames as a subscriber that stopped reading
            // may pin: this one is read from the table by whoever needs it, at their own pace.
            self.broadcast(Live::Advanced { session, seq });
        }
    }

    fn publish_complete(&mut self, status: Option<&str>) {
        let head = self
            .head
            .as_ref()
            .and_then(|head| Some((head.session.clone()?, head.seq)));
        let status = status.map(Arc::from);
        self.broadcast(Live::Complete { head, status });
    }

    /// Sends a message to every subscriber, counting it for [`LargeFrames`]. No subscriber
    /// listening right now is not an error: they read the table.
    fn broadcast(&mut self, live: Live) {
        let frame = match &live {
            Live::Event(event) => event.encoded.frame.len(),
            Live::Advanced { .. } | Live::Complete { .. } => 0,
        };
        self.large.sent(frame);
        let _ = self.live.send(live);
    }

    fn read_failed(&self, error: &DbError) {
        tracing::warn!(task = %self.task_id, %error, "tail read failed");
    }
}
