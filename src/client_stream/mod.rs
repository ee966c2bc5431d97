//! A client's stream: the task that writes one SSE response.
//!
//! It owns the sending half of the bounded channel whose receiving half is the response body
//! ([`body`]). It subscribed to its task's tail *before* the handler read the task's position,
//! so anything committed after that read reaches it live, and anything committed before is in
//! the table. It alternates between two phases:
//! - **catch-up**: read the task's position, follow a newer session, send the stored rows past
//!   its cursor in batches, and finish with `complete` if the task is no longer `InProgress`;
//! - **live**: forward the tail's frames that come right after its cursor, skip the ones it
//!   already sent, and fall back to catch-up on a gap, a lag (it could not keep up) or a
//!   `complete` it is not yet level with.
//!
//! A slow client therefore never holds a backlog: it lags, reads the table at its own pace and
//! rejoins. What a stream holds is bounded in bytes (`--replay-bytes`): it reads its next rows
//! only once the client has taken the frames of the last ones, and the frames queued for the
//! client stay within the same budget, however slowly it reads; one larger event is held whole.
//! A failed send means the client is gone; one that accepts nothing for the write timeout is
//! disconnected ([`outlet`]). Either way it resumes by cursor and loses nothing. Every decision
//! is in [`position`], tested apart from I/O.
//!
//! [`multi`] streams several tasks over one response, one lane per task with the same
//! decisions (where its cursor places each lane: [`lanes`]); [`task_list`] is the live task
//! list, a snapshot and then the changes.

mod body;
mod coalesce;
mod lanes;
mod multi;
mod outlet;
mod position;
mod task_list;

use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

use http_body_util::StreamBody;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

pub(crate) use self::body::{ConnectionAbort, EventBody};
use self::body::{FrameReceiver, Queued};
use self::coalesce::Coalescer;
pub(crate) use self::multi::{MultiStart, MultiTask, Opened, open as open_multi};
use self::outlet::{Outlet, Queue};
pub(crate) use self::position::already_complete;
use self::position::{OnLive, Sent};
pub(crate) use self::task_list::{ListStart, spawn_list};
use crate::app::App;
use crate::db::{DbError, EventPage, Session, TaskPosition};
use crate::live::hub::Subscription;
use crate::live::tail::Live;
use crate::metrics::EndReason;
use crate::wire::cursor::Cursor;
use crate::wire::{event, sse};

/// Where a stream starts.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) task_id: Arc<str>,
    /// Taken before `position` was read.
    pub(crate) subscription: Subscription,
    /// The task's position as read after subscribing.
    pub(crate) position: TaskPosition,
    /// The client's cursor, if it resumes.
    pub(crate) cursor: Option<Cursor>,
    /// Closes the client's connection if it stops reading (absent outside a real server).
    pub(crate) abort: Option<ConnectionAbort>,
    /// When the client's token expires (authentication on): the stream ends then.
    pub(crate) token_expires: Option<SystemTime>,
    /// The stream's place under `max_streams`, held until it ends.
    pub(crate) slot: OwnedSemaphorePermit,
}

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
    sent: Sent,
    sink: Sink,
}

/// Starts the stream task of one response and returns the response body.
pub(crate) fn spawn(app: Arc<App>, start: Start) -> EventBody {
    let (out, body) = open_outlet(&app, start.token_expires);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut task = StreamTask {
            app: app.clone(),
            task_id: start.task_id,
            subscription: start.subscription,
            sent: Sent::default(),
            sink: Sink::new(out),
        };
        let result = task.run(start.position, start.cursor).await;
        task.sink.report_sent(&app);
        let reason = stream_ended(&app, result, start.abort.as_ref());
        tracing::info!(
            task = %task.task_id,
            session = task.sent.session.as_ref().map_or("", |s| s.id.as_str()),
            duration_ms = started.elapsed().as_millis() as u64,
            events = task.sink.events,
            reason = reason.as_str(),
            "stream ended"
        );
        drop(start.slot);
    });
    body
}

/// Accounts for the end of a stream whose task returned `result`: a slow client's connection
/// is closed, the reason counted, and the open stream that [`open_outlet`] counted uncounted.
fn stream_ended(
    app: &App,
    result: Result<(), EndReason>,
    abort: Option<&ConnectionAbort>,
) -> EndReason {
    let reason = result.err().unwrap_or(EndReason::Complete);
    if let (EndReason::Slow, Some(abort)) = (reason, abort) {
        abort.abort();
    }
    app.metrics.record_end(reason);
    app.metrics.open_streams.dec();
    reason
}

/// A new stream's outlet and the response body it feeds, counted as an open stream.
fn open_outlet(app: &App, token_expires: Option<SystemTime>) -> (Outlet, EventBody) {
    let (tx, rx) = mpsc::channel(app.config.client_buffer);
    let queued = Arc::new(Queued::new(app.metrics.client_buffer_bytes.clone()));
    let config = &app.config;
    let ending = outlet::ending(
        app.shutdown.clone(),
        config.drain_deadline / 2,
        token_expires,
        config.max_stream_lifetime,
    );
    let queue = Queue {
        tx,
        queued: queued.clone(),
        max_queued: config.replay_bytes,
    };
    let out = Outlet::new(queue, config.keepalive, config.write_timeout, ending);
    app.metrics.open_streams.inc();
    (out, StreamBody::new(FrameReceiver { rx, queued }))
}

impl StreamTask {
    async fn run(
        &mut self,
        position: TaskPosition,
        cursor: Option<Cursor>,
    ) -> Result<(), EndReason> {
        self.sink
            .out
            .send(sse::retry(self.app.config.retry.as_millis() as u64))
            .await?;
        self.sent = Sent::start(&position, cursor.as_ref());
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
            self.sent.follow_latest(&position);
            // Boxed: a replay's state (a query, a chunk being built) would otherwise stay in
            // the future of every stream long after it is caught up.
            Box::pin(self.replay()).await?;
            if !position.in_progress() {
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

    /// Sends every stored event of the session past the cursor, a batch at a time. Each batch
    /// is read once the client has taken the last one, and holds at most `--replay-bytes` (or
    /// one larger row).
    async fn replay(&mut self) -> Result<(), EndReason> {
        let Some(session) = self.sent.session.clone() else {
            return Ok(());
        };
        loop {
            let after = self.sent.seq;
            let page = next_page(
                &self.app,
                &mut self.sink.out,
                &self.task_id,
                &session,
                after,
            )
            .await?;
            let mut chunk = Coalescer::default();
            for row in page.rows {
                chunk.write(|out| {
                    let cursor = session.cursor(row.seq);
                    event::write_frame(out, &cursor, &row.event_type, &row.content);
                });
                self.sent.seq = row.seq;
                self.sink.events += 1;
                if chunk.is_full() {
                    self.sink.flush(&self.app, &mut chunk).await?;
                }
            }
            self.sink.flush(&self.app, &mut chunk).await?;
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Forwards live frames until the stream must catch up, completes, or ends. Whatever is
    /// already waiting when a message arrives is taken too, so a burst becomes one write.
    async fn follow_live(&mut self) -> Result<LiveExit, EndReason> {
        // One watcher for the whole live phase: a new one per frame would register and
        // unregister a waiter each time.
        let watcher = self.sink.out.watcher();
        let mut gone = pin!(watcher.closed());
        let mut chunk = Coalescer::default();
        loop {
            let first = self
                .sink
                .out
                .next_live(&mut self.subscription.live, gone.as_mut())
                .await?;
            let mut next = Some(first);
            while let Some(received) = next.take() {
                match self.sent.on_live(&received) {
                    OnLive::Send => {
                        if let Ok(Live::Event(event)) = &received {
                            self.sent.record(&event.session, event.seq);
                            self.sink.events += 1;
                            if let Some(at) = event.notified_at {
                                let waited = at.elapsed().as_secs_f64();
                                self.app.metrics.notify_to_send_seconds.observe(waited);
                            }
                            chunk.push(&event.encoded.frame);
                        }
                    }
                    OnLive::Skip => {}
                    OnLive::CatchUp => {
                        self.sink.flush(&self.app, &mut chunk).await?;
                        return Ok(LiveExit::Behind);
                    }
                    OnLive::Complete => {
                        self.sink.flush(&self.app, &mut chunk).await?;
                        self.complete().await?;
                        return Ok(LiveExit::Completed);
                    }
                    OnLive::Closed => return Err(EndReason::Shutdown),
                }
                if !chunk.is_full() {
                    next = self.try_next_live();
                }
            }
            self.sink.flush(&self.app, &mut chunk).await?;
        }
    }

    /// The tail's next message if one is already waiting.
    fn try_next_live(&mut self) -> Option<Result<Live, RecvError>> {
        match self.subscription.live.try_recv() {
            Ok(live) => Some(Ok(live)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }

    /// Sends the terminal `complete` event.
    async fn complete(&mut self) -> Result<(), EndReason> {
        let cursor = self.sent.complete_cursor().to_string();
        self.sink
            .out
            .send(sse::event(&cursor, "complete", "{}"))
            .await
    }
}

/// The next page of a replay of `session` after `after`, read once the client has taken
/// everything queued for it, so that the rows a stream holds and the frames queued for its
/// client stay within one budget (`--replay-bytes`). Boxed, like every query of a stream.
async fn next_page(
    app: &App,
    out: &mut Outlet,
    task_id: &str,
    session: &Session,
    after: i64,
) -> Result<EventPage, EndReason> {
    if app.shutdown.is_triggered() {
        return Err(EndReason::Shutdown);
    }
    out.drained().await?;
    let page = Box::pin(async {
        let _turn = app.read_slot().await;
        app.db
            .events(&session.id, after, app.config.page_limit())
            .await
    })
    .await;
    page.map_err(|error| {
        tracing::warn!(task = %task_id, %error, "replay failed");
        EndReason::Error
    })
}

/// A stream's outlet and the count of the events sent through it.
struct Sink {
    out: Outlet,
    /// Events sent, for the end-of-stream log line.
    events: u64,
    /// How many of them the shared counter already has.
    reported: u64,
}

impl Sink {
    fn new(out: Outlet) -> Sink {
        Sink {
            out,
            events: 0,
            reported: 0,
        }
    }

    /// Sends the chunk built so far, if any, and reports the events sent.
    async fn flush(&mut self, app: &App, chunk: &mut Coalescer) -> Result<(), EndReason> {
        if let Some(bytes) = chunk.take() {
            self.out.send(bytes).await?;
        }
        self.report_sent(app);
        Ok(())
    }

    /// Adds the events sent since the last report to the shared counter: once per write, not
    /// once per event, since every stream would otherwise contend on it for every event.
    fn report_sent(&mut self, app: &App) {
        app.metrics.events_sent.inc_by(self.events - self.reported);
        self.reported = self.events;
    }
}

/// Reads the task's position on behalf of a client (in its turn among client reads).
async fn read_position(app: &App, task_id: &str) -> Result<Option<TaskPosition>, DbError> {
    let _turn = app.read_slot().await;
    app.db.position(task_id).await
}
