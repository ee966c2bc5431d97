//! A multi-task stream (`GET /events/stream?task=…`): one response that carries several tasks,
//! each exactly as its single-task stream would, over one connection.
//!
//! Each task is a *lane*: its own subscription to the task's shared tail (the same tail that
//! single-task clients of the task use), and its own [`Sent`] position, decided by the same
//! rules ([`super::position`]). The stream task waits on the next message of any lane and
//! handles one lane at a time: a lane that is behind catches up from the table while the
//! others' messages wait in their rings (a lane that lags behind its ring catches up in turn).
//!
//! Frames are `event: <the single-task name>` with `data: {"task": …, "data": …}`; the tail
//! encodes that body once per event for all multi-task subscribers ([`LiveEvent::tagged`]),
//! and each stream writes only its own `id:` line, the cursor of every lane
//! ([`crate::wire::multi_cursor`]). The cursor is kept as one string in which each lane owns a
//! fixed-width slot, so a frame rewrites one 24-byte entry, not the whole cursor.

use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::coalesce::Coalescer;
use super::lanes::{self, LaneStart, Unmatched};
use super::position::{OnLive, Sent};
use super::{
    ConnectionAbort, EventBody, Sink, next_page, open_outlet, read_position, stream_ended,
};
use crate::app::App;
use crate::db::TaskPosition;
use crate::live::hub::{Subscription, Watching};
use crate::live::tail::{Live, LiveEvent};
use crate::metrics::EndReason;
use crate::wire::multi_cursor::{self, ENTRY_LEN, Entry, FIXED_LEN, MultiCursor};
use crate::wire::{event, sse};

/// One requested task, as the router prepared it.
#[derive(Debug)]
pub(crate) struct MultiTask {
    pub(crate) task_id: Arc<str>,
    /// Taken before `position` was read.
    pub(crate) subscription: Subscription,
    /// The task's position as read after subscribing (`None`: it does not exist).
    pub(crate) position: Option<TaskPosition>,
}

/// What the router hands over for a multi-task stream.
#[derive(Debug)]
pub(crate) struct MultiStart {
    /// The requested tasks, in the order of the request.
    pub(crate) tasks: Vec<MultiTask>,
    /// The client's cursor, if it resumes.
    pub(crate) cursor: Option<MultiCursor>,
    /// Closes the client's connection if it stops reading (absent outside a real server).
    pub(crate) abort: Option<ConnectionAbort>,
    /// When the client's token expires (authentication on): the stream ends then.
    pub(crate) token_expires: Option<SystemTime>,
    /// The stream's place under `max_streams`, held until it ends.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// How a multi-task request is answered.
#[derive(Debug)]
pub(crate) enum Opened {
    /// The stream.
    Stream(EventBody),
    /// Every task was complete in the cursor and none came back with new events (`204`).
    NothingNew,
    /// This task does not exist (`404`).
    Missing(Arc<str>),
}

/// One task of the stream.
struct Lane {
    /// The task followed, for its queries and its `task_complete`.
    task_id: Arc<str>,
    /// The task id as a JSON string, the label of its frames.
    task_json: String,
    /// The task's hash under the stream's salt.
    hash: u32,
    /// The last event delivered, decided by the single-task rules.
    sent: Sent,
    /// `task_complete` was sent (or the cursor says it was): the lane is followed no more.
    done: bool,
    /// Keeps the task's tail while the lane is followed.
    watching: Option<Watching>,
}

/// The stream task's state.
struct MultiStream {
    app: Arc<App>,
    lanes: Vec<Lane>,
    /// The cursor of the last frame: `m<salt>` and one [`ENTRY_LEN`] slot per lane.
    cursor: String,
    sink: Sink,
}

/// The next message of lane `index`, with its receiver handed back.
type Received = (usize, Result<Live, RecvError>, broadcast::Receiver<Live>);

/// Decides how the request is answered and, when it is a stream, starts its task.
pub(crate) fn open(app: Arc<App>, start: MultiStart) -> Result<Opened, Unmatched> {
    let ids: Vec<&str> = start.tasks.iter().map(|t| &*t.task_id).collect();
    let (salt, entries) = lanes::resolve(start.cursor.as_ref(), &ids)?;
    let mut plans = Vec::with_capacity(start.tasks.len());
    for (task, entry) in start.tasks.iter().zip(&entries) {
        match lanes::lane_start(entry.as_ref(), task.position.as_ref()) {
            Some(plan) => plans.push(plan),
            None => return Ok(Opened::Missing(task.task_id.clone())),
        }
    }
    if plans.iter().all(|plan| *plan == LaneStart::Done) {
        return Ok(Opened::NothingNew);
    }
    let (out, body) = open_outlet(&app, start.token_expires);
    let mut cursor = MultiCursor {
        salt,
        entries: Vec::with_capacity(plans.len()),
    };
    let mut lanes = Vec::with_capacity(plans.len());
    let mut receivers = Vec::with_capacity(plans.len());
    let mut positions = Vec::with_capacity(plans.len());
    for ((task, entry), plan) in start.tasks.into_iter().zip(entries).zip(plans) {
        let hash = multi_cursor::task_hash(salt, &task.task_id);
        let (sent, done) = match plan {
            LaneStart::Follow(sent) => (sent, false),
            LaneStart::Done => (Sent::default(), true),
        };
        cursor.entries.push(match (done, entry) {
            // A lane the cursor saw complete keeps its entry as it was (matched by `hash`).
            (true, Some(entry)) => entry,
            _ => lane_entry(hash, &sent, done),
        });
        lanes.push(Lane {
            task_json: event::task_json(&task.task_id),
            task_id: task.task_id,
            hash,
            sent,
            done,
            watching: (!done).then_some(task.subscription.watching),
        });
        receivers.push((!done).then_some(task.subscription.live));
        positions.push(task.position);
    }
    let mut stream = MultiStream {
        app: app.clone(),
        lanes,
        cursor: cursor.to_string(),
        sink: Sink::new(out),
    };
    let abort = start.abort;
    let slot = start.slot;
    tokio::spawn(async move {
        let started = Instant::now();
        let result = stream.run(positions, receivers).await;
        stream.sink.report_sent(&app);
        let reason = stream_ended(&app, result, abort.as_ref());
        tracing::info!(
            tasks = stream.lanes.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            events = stream.sink.events,
            reason = reason.as_str(),
            "multi-task stream ended"
        );
        drop(slot);
    });
    Ok(Opened::Stream(body))
}

/// A lane's cursor entry.
fn lane_entry(hash: u32, sent: &Sent, complete: bool) -> Entry {
    Entry {
        task: hash,
        session: sent.session.as_ref().map(|s| s.hash),
        seq: sent.seq,
        complete,
    }
}

/// Waits for lane `index`'s next message.
async fn receive(index: usize, mut live: broadcast::Receiver<Live>) -> Received {
    let received = live.recv().await;
    (index, received, live)
}

impl MultiStream {
    async fn run(
        &mut self,
        positions: Vec<Option<TaskPosition>>,
        receivers: Vec<Option<broadcast::Receiver<Live>>>,
    ) -> Result<(), EndReason> {
        self.sink
            .out
            .send(sse::retry(self.app.config.retry.as_millis() as u64))
            .await?;
        for (index, position) in positions.into_iter().enumerate() {
            if !self.lanes[index].done {
                self.catch_up(index, Some(position)).await?;
            }
        }
        let mut waiting = FuturesUnordered::new();
        for (index, live) in receivers.into_iter().enumerate() {
            if let Some(live) = live
                && !self.lanes[index].done
            {
                waiting.push(receive(index, live));
            }
        }
        let watcher = self.sink.out.watcher();
        let mut gone = pin!(watcher.closed());
        let mut chunk = Coalescer::default();
        while !waiting.is_empty() {
            let first = self.sink.out.next(waiting.next(), gone.as_mut()).await?;
            let mut next = first;
            while let Some((index, received, live)) = next.take() {
                if self.on_live(index, received, &mut chunk).await? {
                    waiting.push(receive(index, live));
                }
                if !chunk.is_full() {
                    next = waiting.next().now_or_never().flatten();
                }
            }
            self.sink.flush(&self.app, &mut chunk).await?;
        }
        self.all_complete().await
    }

    /// Handles one message of lane `index`; whether the lane is still followed.
    async fn on_live(
        &mut self,
        index: usize,
        received: Result<Live, RecvError>,
        chunk: &mut Coalescer,
    ) -> Result<bool, EndReason> {
        match self.lanes[index].sent.on_live(&received) {
            OnLive::Send => {
                if let Ok(Live::Event(event)) = &received {
                    self.send_live(index, event, chunk);
                }
            }
            OnLive::Skip => {}
            OnLive::CatchUp => {
                self.sink.flush(&self.app, chunk).await?;
                self.app.metrics.catch_ups.inc();
                self.catch_up(index, None).await?;
            }
            OnLive::Complete => {
                self.sink.flush(&self.app, chunk).await?;
                let status = match &received {
                    Ok(Live::Complete { status, .. }) => status.clone(),
                    _ => None,
                };
                self.task_complete(index, status.as_deref()).await?;
            }
            OnLive::Closed => return Err(EndReason::Shutdown),
        }
        Ok(!self.lanes[index].done)
    }

    /// Writes a live event of lane `index`: its cursor, then the body the tail shares.
    fn send_live(&mut self, index: usize, event: &LiveEvent, chunk: &mut Coalescer) {
        let lane = &mut self.lanes[index];
        lane.sent.record(&event.session, event.seq);
        let body = event
            .tagged
            .get_or_init(|| event.encoded.tagged(&lane.task_json));
        self.set_entry(index);
        if let Some(at) = event.notified_at {
            let waited = at.elapsed().as_secs_f64();
            self.app.metrics.notify_to_send_seconds.observe(waited);
        }
        self.sink.events += 1;
        let cursor = &self.cursor;
        chunk.write(|out| {
            sse::write_id(out, cursor);
            out.extend_from_slice(body);
        });
    }

    /// Brings lane `index` level with the table: reads its position (unless `known`), follows
    /// a newer session, sends the stored rows past its cursor, and ends the lane if the task
    /// is no longer `InProgress`.
    async fn catch_up(
        &mut self,
        index: usize,
        known: Option<Option<TaskPosition>>,
    ) -> Result<(), EndReason> {
        let position = match known {
            Some(position) => position,
            None => {
                let task_id = self.lanes[index].task_id.clone();
                match Box::pin(read_position(&self.app, &task_id)).await {
                    Ok(position) => position,
                    Err(error) => {
                        tracing::warn!(task = %task_id, %error, "catch-up failed");
                        return Err(EndReason::Error);
                    }
                }
            }
        };
        let Some(position) = position else {
            return self.task_complete(index, None).await; // deleted
        };
        self.lanes[index].sent.follow_latest(&position);
        // Boxed, as in a single-task stream: a replay's state (a query, a chunk being built)
        // would otherwise stay in the stream's future long after it is caught up.
        Box::pin(self.replay(index)).await?;
        if !position.in_progress() {
            return self.task_complete(index, Some(&position.status)).await;
        }
        Ok(())
    }

    /// Sends every stored event of lane `index`'s session past its cursor, a batch at a time,
    /// within the same budget as a single-task stream's replay.
    async fn replay(&mut self, index: usize) -> Result<(), EndReason> {
        let Some(session) = self.lanes[index].sent.session.clone() else {
            return Ok(());
        };
        loop {
            let (task_id, after) = (&self.lanes[index].task_id, self.lanes[index].sent.seq);
            let page = next_page(&self.app, &mut self.sink.out, task_id, &session, after).await?;
            let mut chunk = Coalescer::default();
            for row in page.rows {
                self.lanes[index].sent.seq = row.seq;
                self.set_entry(index);
                self.sink.events += 1;
                let (cursor, task) = (&self.cursor, &self.lanes[index].task_json);
                chunk.write(|out: &mut BytesMut| {
                    event::write_tagged(out, cursor, task, &row.event_type, &row.content);
                });
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

    /// Ends lane `index`: `task_complete` with the task's status (`None`: deleted), whose
    /// cursor marks the lane complete so that a reconnect does not follow the task again.
    async fn task_complete(&mut self, index: usize, status: Option<&str>) -> Result<(), EndReason> {
        let lane = &mut self.lanes[index];
        lane.done = true;
        lane.watching = None;
        let data = event::task_complete_data(&lane.task_id, status);
        self.set_entry(index);
        self.sink
            .out
            .send(sse::event(&self.cursor, "task_complete", &data))
            .await
    }

    /// Every lane is done: the terminal `complete`.
    async fn all_complete(&mut self) -> Result<(), EndReason> {
        self.sink
            .out
            .send(sse::event(&self.cursor, "complete", "{}"))
            .await
    }

    /// Rewrites lane `index`'s slot of the cursor.
    fn set_entry(&mut self, index: usize) {
        let lane = &self.lanes[index];
        let mut slot = [0u8; ENTRY_LEN];
        lane_entry(lane.hash, &lane.sent, lane.done).encode(&mut slot);
        let at = FIXED_LEN + index * ENTRY_LEN;
        // The slot is base64url, ASCII like the rest of the cursor.
        if let Ok(text) = std::str::from_utf8(&slot) {
            self.cursor.replace_range(at..at + ENTRY_LEN, text);
        }
    }
}
