//! A client's stream: the task that writes one SSE response.
//!
//! It owns the sending half of the bounded channel whose receiving half is the response body.
//! It subscribed to its task's tail *before* the handler read the task's position, so anything
//! committed after that read reaches it live, and anything committed before is in the table.
//! It alternates between two phases:
//! - **catch-up**: read the task's position, follow a newer session, send the stored rows past
//!   its cursor in batches, and finish with `complete` if the task is no longer `InProgress`;
//! - **live**: forward the tail's frames that come right after its cursor, skip the ones it
//!   already sent, and fall back to catch-up on a gap, a lag (it could not keep up) or a
//!   `complete` it is not yet level with.
//!
//! A slow client therefore never holds a backlog: it lags, reads the table at its own pace and
//! rejoins. A failed send means the client is gone; one that accepts nothing for the write
//! timeout is disconnected. Either way it resumes by cursor and loses nothing.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, Sleep, timeout};

use crate::app::App;
use crate::wire::cursor::Cursor;
use crate::db::{Session, TaskPosition};
use crate::wire::event;
use crate::live::hub::{Live, Subscription};
use crate::metrics::EndReason;
use crate::http::server::ConnectionAbort;
use crate::wire::sse;

/// Frames are coalesced into chunks of up to this many bytes before they go to the socket, so
/// a burst costs one write instead of one per event.
const CHUNK_BYTES: usize = 32 * 1024;

/// What the response body yields.
pub type BodyFrame = Result<Frame<Bytes>, Infallible>;

/// The response body of a stream: whatever its stream task sends, until it drops the sender.
pub type EventBody = StreamBody<FrameReceiver>;

/// The receiving half of a stream's channel, as the `Stream` that [`StreamBody`] wants. The
/// channel carries bare `Bytes` (32 bytes a slot) and they become frames here: a channel of
/// `Frame`s would cost three times the memory per idle stream.
#[derive(Debug)]
pub struct FrameReceiver(mpsc::Receiver<Bytes>);

impl futures_util::Stream for FrameReceiver {
    type Item = BodyFrame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyFrame>> {
        self.0
            .poll_recv(cx)
            .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Where a stream starts.
#[derive(Debug)]
pub struct Start {
    /// The task streamed.
    pub task_id: Arc<str>,
    /// Its subscription, taken before `position` was read.
    pub subscription: Subscription,
    /// The task's position as read after subscribing.
    pub position: TaskPosition,
    /// The client's cursor, if it resumes.
    pub cursor: Option<Cursor>,
    /// Closes the client's connection if it stops reading (absent outside a real server).
    pub abort: Option<ConnectionAbort>,
    /// When the client's token expires (authentication on): the stream ends then.
    pub token_expires: Option<SystemTime>,
    /// The stream's place under `max_streams`, held until it ends.
    pub slot: OwnedSemaphorePermit,
}

/// The sending side of one response body, with the client's pace rules.
struct Outlet {
    tx: mpsc::Sender<Bytes>,
    /// Fires a keep-alive interval after it was last armed; when it fires, `last_sent` says
    /// whether the stream has really been silent that long (re-arming a timer on every frame
    /// would cost a timer-wheel update per frame per client).
    keepalive: Pin<Box<Sleep>>,
    /// When bytes were last handed to the client.
    last_sent: Instant,
    /// Resolves when the stream must end for a reason of the server's: shutdown (after this
    /// stream's share of the spread), token expiry, or the maximum lifetime.
    ending: Ending,
    app: Arc<App>,
}

/// See [`Outlet::ending`].
type Ending = Pin<Box<dyn Future<Output = EndReason> + Send>>;

/// How a live phase ended without ending the stream.
enum LiveExit {
    /// The client must catch up from the table.
    Behind,
    /// `complete` was sent.
    Completed,
}

/// A stream task's state.
struct StreamTask {
    app: Arc<App>,
    task_id: Arc<str>,
    subscription: Subscription,
    /// The session of the last event sent (or the one being replayed), `None` before any.
    session: Option<Arc<Session>>,
    /// The last seq sent in `session`.
    seq: i64,
    out: Outlet,
    /// Events sent, for the end-of-stream log line.
    sent: u64,
    /// How many of them the shared counter already has.
    reported: u64,
}

/// Starts the stream task of one response and returns the response body.
pub fn spawn(app: Arc<App>, start: Start) -> EventBody {
    let (tx, rx) = mpsc::channel(app.config.client_buffer);
    let keepalive = Box::pin(tokio::time::sleep(app.config.keepalive));
    let out = Outlet {
        tx,
        keepalive,
        last_sent: Instant::now(),
        ending: ending(&app, start.token_expires),
        app: app.clone(),
    };
    app.metrics.open_streams.inc();
    tokio::spawn(async move {
        let started = Instant::now();
        let task_id = start.task_id.clone();
        let mut task = StreamTask::new(app.clone(), start.task_id, start.subscription, out);
        let reason = match task.run(start.position, start.cursor).await {
            Ok(()) => EndReason::Complete,
            Err(reason) => reason,
        };
        task.report_sent();
        if let (EndReason::Slow, Some(abort)) = (reason, &start.abort) {
            abort.abort();
        }
        tracing::info!(
            task = %task_id,
            session = task.session.as_ref().map_or("", |s| s.id.as_str()),
            duration_ms = started.elapsed().as_millis() as u64,
            events = task.sent,
            reason = reason.as_str(),
            "stream ended"
        );
        app.metrics.record_end(reason);
        app.metrics.open_streams.dec();
        drop(start.slot);
    });
    StreamBody::new(FrameReceiver(rx))
}

impl StreamTask {
    fn new(app: Arc<App>, task_id: Arc<str>, subscription: Subscription, out: Outlet) -> Self {
        StreamTask {
            app,
            task_id,
            subscription,
            session: None,
            seq: 0,
            out,
            sent: 0,
            reported: 0,
        }
    }

    async fn run(
        &mut self,
        position: TaskPosition,
        cursor: Option<Cursor>,
    ) -> Result<(), EndReason> {
        self.out
            .send(sse::retry(self.app.config.retry.as_millis() as u64))
            .await?;
        self.start_at(&position, cursor);
        let mut known = Some(position);
        loop {
            let position = match known.take() {
                Some(position) => position,
                // Boxed, like every query here: the stream task's future then keeps only a
                // pointer for it while idle, instead of the query's whole state.
                None => match Box::pin(read_position(&self.app, &self.task_id)).await {
                    Ok(Some(position)) => position,
                    Ok(None) => return self.complete().await, // deleted
                    Err(error) => {
                        tracing::warn!(task = %self.task_id, %error, "catch-up failed");
                        return Err(EndReason::Error);
                    }
                },
            };
            self.follow_latest(&position);
            self.replay().await?;
            if !position.in_progress {
                return self.complete().await;
            }
            match self.follow_live().await? {
                LiveExit::Behind => {
                    self.app.metrics.catch_ups.inc();
                }
                LiveExit::Completed => return Ok(()),
            }
        }
    }

    /// Places the stream at the client's cursor: right after it when it names the latest
    /// session, at the start of the latest session otherwise (an older session, or one the
    /// task does not have). A cursor past the session's end (a restored database) is held at
    /// the end rather than replaying what the client already has.
    fn start_at(&mut self, position: &TaskPosition, cursor: Option<Cursor>) {
        let Some((latest, last_seq)) = &position.head else {
            return;
        };
        self.session = Some(latest.clone());
        self.seq = match cursor {
            Some(Cursor {
                session: Some(session),
                seq,
                ..
            }) if session == latest.id => seq.min(*last_seq),
            _ => 0,
        };
    }

    /// Moves to the position's latest session if it is newer than the one being streamed.
    fn follow_latest(&mut self, position: &TaskPosition) {
        if let Some((latest, _)) = &position.head {
            let newer = match &self.session {
                Some(current) => latest.is_newer_than(current),
                None => true,
            };
            if newer {
                self.session = Some(latest.clone());
                self.seq = 0;
            }
        }
    }

    /// Sends every stored event of the session past the cursor, a batch at a time.
    async fn replay(&mut self) -> Result<(), EndReason> {
        let Some(session) = self.session.clone() else {
            return Ok(());
        };
        let batch = self.app.config.replay_batch;
        loop {
            if self.app.shutdown.is_triggered() {
                return Err(EndReason::Shutdown);
            }
            let rows = Box::pin(async {
                let _turn = self.app.read_slot().await;
                self.app.db.events(&session.id, self.seq, batch).await
            })
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(task = %self.task_id, %error, "replay failed");
                    return Err(EndReason::Error);
                }
            };
            let full = rows.len() as i64 == batch;
            let mut chunk = BytesMut::new();
            for row in rows {
                event::write_frame(
                    &mut chunk,
                    &session.cursor(row.seq),
                    &row.event_type,
                    &row.content,
                );
                self.seq = row.seq;
                self.sent += 1;
                if chunk.len() >= CHUNK_BYTES {
                    self.out.send(chunk.split().freeze()).await?;
                }
            }
            if !chunk.is_empty() {
                self.out.send(chunk.freeze()).await?;
            }
            self.report_sent();
            if !full {
                return Ok(());
            }
        }
    }

    /// Forwards live frames until the stream must catch up, completes, or ends.
    async fn follow_live(&mut self) -> Result<LiveExit, EndReason> {
        let mut chunk = BytesMut::new();
        // Resolves when the response body is dropped (hyper saw the connection close), so a
        // client that leaves while nothing is sent is noticed at once. One watcher for the
        // whole live phase: a new one per frame would register and unregister a waiter each
        // time.
        let watcher = self.out.tx.clone();
        let mut gone = pin!(watcher.closed());
        loop {
            let first = tokio::select! {
                biased;
                reason = &mut self.out.ending => return Err(reason),
                received = self.subscription.live.recv() => received,
                () = &mut self.out.keepalive => {
                    let due = self.out.last_sent + self.app.config.keepalive;
                    if Instant::now() >= due {
                        self.out.send(Bytes::from_static(sse::KEEP_ALIVE)).await?;
                    }
                    let next = self.out.last_sent + self.app.config.keepalive;
                    self.out.keepalive.as_mut().reset(next);
                    continue;
                }
                () = &mut gone => return Err(EndReason::ClientGone),
            };
            // Take whatever else is already waiting, so a burst becomes one write.
            let mut next = Some(first);
            let mut single: Option<Bytes> = None;
            while let Some(received) = next.take() {
                let exit = match received {
                    Ok(Live::Event(event)) => match self.place(&event.session, event.seq) {
                        Place::Next => {
                            if !self
                                .session
                                .as_ref()
                                .is_some_and(|current| Arc::ptr_eq(current, &event.session))
                            {
                                self.session = Some(event.session.clone());
                            }
                            self.seq = event.seq;
                            self.sent += 1;
                            if let Some(at) = event.notified_at {
                                self.app
                                    .metrics
                                    .notify_to_send_seconds
                                    .observe(at.elapsed().as_secs_f64());
                            }
                            match single.take() {
                                None if chunk.is_empty() => single = Some(event.frame.clone()),
                                previous => {
                                    if let Some(previous) = previous {
                                        chunk.extend_from_slice(&previous);
                                    }
                                    chunk.extend_from_slice(&event.frame);
                                }
                            }
                            None
                        }
                        Place::Sent => None,
                        Place::Gap => Some(LiveExit::Behind),
                    },
                    Ok(Live::Advanced { session, seq }) => match self.place(&session, seq) {
                        Place::Sent => None,
                        Place::Next | Place::Gap => Some(LiveExit::Behind),
                    },
                    Ok(Live::Complete { head }) => {
                        if self.is_at(&head) {
                            self.flush(&mut single, &mut chunk).await?;
                            self.complete().await?;
                            Some(LiveExit::Completed)
                        } else {
                            Some(LiveExit::Behind)
                        }
                    }
                    Err(RecvError::Lagged(_)) => Some(LiveExit::Behind),
                    Err(RecvError::Closed) => return Err(EndReason::Shutdown),
                };
                if let Some(exit) = exit {
                    self.flush(&mut single, &mut chunk).await?;
                    return Ok(exit);
                }
                if chunk.len() < CHUNK_BYTES {
                    next = match self.subscription.live.try_recv() {
                        Ok(live) => Some(Ok(live)),
                        Err(TryRecvError::Empty) => None,
                        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                    };
                }
            }
            self.flush(&mut single, &mut chunk).await?;
        }
    }

    async fn flush(
        &mut self,
        single: &mut Option<Bytes>,
        chunk: &mut BytesMut,
    ) -> Result<(), EndReason> {
        if let Some(frame) = single.take() {
            self.out.send(frame).await?;
        }
        if !chunk.is_empty() {
            self.out.send(chunk.split().freeze()).await?;
        }
        self.report_sent();
        Ok(())
    }

    /// Adds the events sent since the last report to the shared counter: once per write, not
    /// once per event, since every stream would otherwise contend on it for every event.
    fn report_sent(&mut self) {
        self.app
            .metrics
            .events_sent
            .inc_by(self.sent - self.reported);
        self.reported = self.sent;
    }

    /// Where event `seq` of `session` stands relative to what this stream has sent.
    fn place(&self, session: &Session, seq: i64) -> Place {
        match &self.session {
            Some(current) if current.id == session.id => {
                if seq <= self.seq {
                    Place::Sent
                } else if seq == self.seq + 1 {
                    Place::Next
                } else {
                    Place::Gap
                }
            }
            Some(current) if !session.is_newer_than(current) => Place::Sent,
            // A newer session (or the first one): its first event follows on directly.
            _ if seq == 1 => Place::Next,
            _ => Place::Gap,
        }
    }

    /// Whether this stream has sent exactly up to the tail's last event.
    fn is_at(&self, head: &Option<(Arc<Session>, i64)>) -> bool {
        match (head, &self.session) {
            (None, None) => true,
            (Some((session, seq)), Some(current)) => session.id == current.id && *seq == self.seq,
            _ => false,
        }
    }

    /// Sends the terminal `complete` event, whose cursor is the last event's plus the mark.
    async fn complete(&mut self) -> Result<(), EndReason> {
        let cursor = Cursor {
            session: self.session.as_ref().map(|s| s.id.clone()),
            seq: self.seq,
            complete: true,
        };
        self.out
            .send(sse::event(&cursor.to_string(), "complete", "{}"))
            .await
    }
}

/// Reads the task's position on behalf of a client (in its turn among client reads).
async fn read_position(
    app: &App,
    task_id: &str,
) -> Result<Option<TaskPosition>, crate::db::DbError> {
    let _turn = app.read_slot().await;
    app.db.position(task_id).await
}

/// See [`StreamTask::place`].
enum Place {
    /// The event right after the cursor: send it.
    Next,
    /// Already sent (or of an older session): skip it.
    Sent,
    /// Something is missing between the cursor and this event: catch up from the table.
    Gap,
}

impl Outlet {
    /// Hands bytes to the client's buffer. Waits while the buffer is full, up to the write
    /// timeout; the keep-alive timer restarts after every send.
    async fn send(&mut self, bytes: Bytes) -> Result<(), EndReason> {
        let result = match self.tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EndReason::ClientGone),
            Err(mpsc::error::TrySendError::Full(frame)) => {
                let write_timeout = self.app.config.write_timeout;
                tokio::select! {
                    sent = timeout(write_timeout, self.tx.send(frame)) => match sent {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(_)) => Err(EndReason::ClientGone),
                        Err(_) => Err(EndReason::Slow),
                    },
                    reason = &mut self.ending => Err(reason),
                }
            }
        };
        if result.is_ok() {
            self.last_sent = Instant::now();
        }
        result
    }
}

/// The stream's [`Ending`]: the first of shutdown (plus a random share of the spread, so that
/// thousands of clients do not reconnect to the remaining instances in one burst), token
/// expiry, and the maximum lifetime (minus up to 10 % jitter, so that streams opened together
/// do not all end together).
fn ending(app: &App, token_expires: Option<SystemTime>) -> Ending {
    let mut shutdown = app.shutdown.clone();
    let spread = jitter(app.config.drain_deadline / 2);
    let expiry = token_expires.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    let lifetime = app
        .config
        .max_stream_lifetime
        .map(|lifetime| lifetime - jitter(lifetime / 10));
    Box::pin(async move {
        let after = |delay: Option<Duration>, reason: EndReason| async move {
            match delay {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    reason
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.wait() => {
                tokio::time::sleep(spread).await;
                EndReason::Shutdown
            }
            reason = after(expiry, EndReason::TokenExpired) => reason,
            reason = after(lifetime, EndReason::Lifetime) => reason,
        }
    })
}

/// A uniformly random duration in `[0, max)` (std's per-instance random hash keys are enough
/// randomness to spread reconnects).
fn jitter(max: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    max.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
}
