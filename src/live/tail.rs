//! One task's live tail: follows the task's latest session and publishes each new event once,
//! already encoded, to every subscriber.
//!
//! Notifications arrive after commit, in commit order, and `seq` grows in commit order within
//! a session, so a notification whose seq is exactly the tail's + 1 and that carries its
//! content is published without any query. Anything else — a gap, a payload without content,
//! another session, a status change, a dropped message — makes the tail re-read its position
//! and the rows after it. The table stays the source of truth.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};

use crate::db::{Db, Session, TaskPosition};
use crate::wire::event;
use crate::live::hub::{LIVE_CAPACITY, Live, LiveEvent, Resync};

/// The most rows a tail reads and publishes to catch up. Beyond it, subscribers could not take
/// them from the ring anyway: the tail moves its head and they read the table themselves.
const MAX_TAIL_READ: i64 = LIVE_CAPACITY as i64 / 2;

/// What the hub sends a tail.
#[derive(Debug)]
pub enum TailMsg {
    /// An event notification of this task.
    Event {
        /// Its session id.
        session: String,
        /// Its seq.
        seq: i64,
        /// Type and content, if the payload carried them.
        body: Option<(String, String)>,
        /// When the notification arrived.
        at: Instant,
    },
    /// The task's status changed or it was deleted: re-read, then complete if it ended.
    Reread,
    /// The poll's observation of the task (`None`: it no longer exists).
    Observed(Option<TaskPosition>),
}

/// The state of one tail task.
struct Tail {
    /// The task followed.
    task_id: Arc<str>,
    /// Where rows are read.
    db: Db,
    /// Rows per read.
    batch: i64,
    /// Subscribers' channel.
    live: broadcast::Sender<Live>,
    /// The session followed and the seq of its last published event. `None` until the first
    /// position read (a new tail publishes nothing until it knows where it stands).
    head: Option<Head>,
}

/// Where a tail stands once it has read its position.
struct Head {
    /// The latest session, `None` while the task has none.
    session: Option<Arc<Session>>,
    /// The last seq published in that session.
    seq: i64,
}

/// Runs a tail until the hub drops its queue (its last subscriber left).
pub async fn run(
    task_id: Arc<str>,
    db: Db,
    batch: i64,
    mut queue: mpsc::Receiver<TailMsg>,
    resync: Arc<Resync>,
    live: broadcast::Sender<Live>,
) {
    let mut tail = Tail {
        task_id,
        db,
        batch,
        live,
        head: None,
    };
    loop {
        tokio::select! {
            biased;
            msg = queue.recv() => match msg {
                Some(msg) => tail.handle(msg).await,
                None => return,
            },
            _ = resync.requested() => {}
        }
        if resync.take() {
            tail.reread().await;
        }
    }
}

impl Tail {
    async fn handle(&mut self, msg: TailMsg) {
        match msg {
            TailMsg::Event {
                session,
                seq,
                body,
                at,
            } => {
                if self.head.is_none() {
                    return self.first_notification(&session, seq, body, at).await;
                }
                if let Some(Head {
                    session: Some(current),
                    seq: last,
                }) = &self.head
                    && current.id == session
                {
                    if seq <= *last {
                        return; // already published (read from the table earlier)
                    }
                    if let (true, Some((event_type, content))) = (seq == last + 1, &body) {
                        let current = current.clone();
                        self.publish(current, seq, event_type, content, Some(at));
                        return;
                    }
                }
                self.reread().await;
            }
            TailMsg::Reread => self.reread().await,
            TailMsg::Observed(position) => self.apply(position).await,
        }
    }

    /// The first notification a new tail receives. The tail was registered before its first
    /// subscriber read anything, and notifications arrive in commit order, so every row of the
    /// session before this one was committed before that read and is in every subscriber's
    /// replay: the tail starts right before this event and publishes it, with one position
    /// query (for the session's start time) however many clients are waiting.
    async fn first_notification(
        &mut self,
        session: &str,
        seq: i64,
        body: Option<(String, String)>,
        at: Instant,
    ) {
        let position = match self.db.position(&self.task_id).await {
            Ok(position) => position,
            Err(error) => return tracing::warn!(task = %self.task_id, %error, "tail read failed"),
        };
        let latest = position.as_ref().and_then(|p| p.head.clone());
        let Some((latest, _)) = latest.filter(|(s, last)| s.id == session && seq <= *last) else {
            // Another session, or a task that is gone: take the position as observed.
            return self.apply(position).await;
        };
        self.head = Some(Head {
            session: Some(latest.clone()),
            seq: seq - 1,
        });
        match &body {
            Some((event_type, content)) => self.publish(latest, seq, event_type, content, Some(at)),
            None => {
                if let Err(error) = self.publish_rows(latest).await {
                    tracing::warn!(task = %self.task_id, %error, "tail read failed");
                }
            }
        }
        if position.is_some_and(|p| !p.in_progress) {
            self.publish_complete();
        }
    }

    /// Reads the task's position and catches up with it. On a database error the tail keeps
    /// its state: the next poll tick observes the position again.
    async fn reread(&mut self) {
        match self.db.position(&self.task_id).await {
            Ok(position) => self.apply(position).await,
            Err(error) => tracing::warn!(task = %self.task_id, %error, "tail read failed"),
        }
    }

    /// Catches up with an observed position: follows a newer session, publishes the rows past
    /// the head, and completes subscribers if the task is no longer `InProgress` (every time it
    /// is observed so: a subscriber that read `InProgress` just before the change must not
    /// wait forever because the tail already knew).
    async fn apply(&mut self, position: Option<TaskPosition>) {
        let Some(position) = position else {
            return self.publish_complete();
        };
        match (position.head, &mut self.head) {
            // First knowledge. Subscribers replayed what was stored before they subscribed, so
            // the rows up to here are theirs already: the tail only says where it stands, and
            // a subscriber whose replay stopped short catches up.
            (Some((latest, last_seq)), None) => self.advance(latest, last_seq),
            (Some((latest, last_seq)), Some(head)) => {
                if head
                    .session
                    .as_ref()
                    .is_none_or(|current| latest.is_newer_than(current))
                {
                    head.session = Some(latest.clone());
                    head.seq = 0;
                }
                let behind = match &head.session {
                    Some(current) if current.id == latest.id => last_seq - head.seq,
                    _ => 0,
                };
                if behind > MAX_TAIL_READ {
                    // More than subscribers could take from the ring: they read the table.
                    self.advance(latest, last_seq);
                } else if behind > 0
                    && let Err(error) = self.publish_rows(latest).await
                {
                    tracing::warn!(task = %self.task_id, %error, "tail read failed");
                    return;
                }
            }
            (None, head) => {
                head.get_or_insert(Head {
                    session: None,
                    seq: 0,
                });
            }
        }
        if !position.in_progress {
            self.publish_complete();
        }
    }

    /// Moves the head without publishing the rows in between, and says so.
    fn advance(&mut self, session: Arc<Session>, seq: i64) {
        self.head = Some(Head {
            session: Some(session.clone()),
            seq,
        });
        let _ = self.live.send(Live::Advanced { session, seq });
    }

    /// Publishes every stored row of `session` past the head, a batch at a time.
    async fn publish_rows(&mut self, session: Arc<Session>) -> Result<(), crate::db::DbError> {
        loop {
            let after = self.head.as_ref().map_or(0, |head| head.seq);
            let rows = self.db.events(&session.id, after, self.batch).await?;
            let full = rows.len() as i64 == self.batch;
            for row in rows {
                self.publish(
                    session.clone(),
                    row.seq,
                    &row.event_type,
                    &row.content,
                    None,
                );
            }
            if !full {
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
        let frame = event::frame(&session.cursor(seq), event_type, content);
        self.head = Some(Head {
            session: Some(session.clone()),
            seq,
        });
        // No subscriber listening right now is not an error: they read the table.
        let _ = self.live.send(Live::Event(Arc::new(LiveEvent {
            session,
            seq,
            frame,
            notified_at,
        })));
    }

    fn publish_complete(&self) {
        let head = self
            .head
            .as_ref()
            .and_then(|head| Some((head.session.clone()?, head.seq)));
        let _ = self.live.send(Live::Complete { head });
    }
}
