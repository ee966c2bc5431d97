//! The soak's writers: agents inserting events into tasks that start, run for a while and
//! complete while new ones start, plus one hot task that runs from the start to the end. Most
//! write over SQL (`INSERT`, then `UPDATE tasks SET status = 'Done'`) on one connection; one
//! group writes over the JSON API (`POST /tasks/{id}/events`, then `PUT /tasks/{id}`) to the
//! instances in turn, moving to the next one when a request fails, as behind a load balancer.
//! Each writer does everything for its tasks in order, so that a task's completion always
//! follows its last insert.
//!
//! Faults break the writers' connections: a writer then reconnects and goes on. An insert whose
//! outcome is unknown (the connection died at commit) is not retried; the ledger compares the
//! clients with what the table holds, never with what a writer believes it committed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::watcher::{self, Behaviour, Shared};
use crate::client;
use crate::payload::{self, unix_nanos};
use crate::pg::{self, pg_error};

/// First pause before a writer reconnects; doubled up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest pause between a writer's reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How long a writer keeps trying to complete its tasks at the end before it gives up (the
/// ledger then fails: those tasks were never seen complete).
const FINISH_DEADLINE: Duration = Duration::from_secs(60);
/// Longest an HTTP writer waits for an answer (an instance that was killed answers nothing).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Event indexes of the held transaction's inserts start here, apart from the hot writer's.
const HELD_BASE: u64 = 1_000_000_000;

/// How a writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// SQL on its own PostgreSQL connection.
    Sql,
    /// The JSON API of the instances.
    Http,
}

/// One group of tasks written by one writer.
#[derive(Debug, Clone)]
pub struct WriterPlan {
    /// How it writes its events and completes its tasks (tasks are created over SQL).
    pub channel: Channel,
    /// Task ids are `<prefix><k>`.
    pub prefix: String,
    /// Tasks running at once.
    pub slots: usize,
    /// Events per second over its tasks.
    pub rate: f64,
    /// Events per task before it completes, drawn between the two; `None`: the tasks run
    /// until the end.
    pub lifetime: Option<(u64, u64)>,
    /// The clients each task gets.
    pub watchers: Vec<Behaviour>,
}

/// What a writer did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct WriterStats {
    /// Inserts that reported success.
    pub inserts: u64,
    /// Statements that failed (most during faults; their outcome is whatever the table says).
    pub errors: u64,
    /// Times it reconnected.
    pub reconnects: u64,
    /// Tasks it started.
    pub tasks_started: u64,
    /// Tasks it completed.
    pub tasks_completed: u64,
    /// Tasks it could not complete at the end.
    pub tasks_left_open: u64,
}

/// The running writers.
#[derive(Debug)]
pub struct Load {
    finish: watch::Sender<bool>,
    writers: Vec<JoinHandle<WriterStats>>,
}

/// The hot task: every run has one, written by the last writer.
pub const HOT_TASK: &str = "hot0";

impl Load {
    /// Starts one writer per plan on `url`; their clients join `shared`.
    pub fn start(url: &str, shared: &Arc<Shared>, plans: Vec<WriterPlan>) -> Load {
        let (finish, _) = watch::channel(false);
        let writers = plans
            .into_iter()
            .enumerate()
            .map(|(number, plan)| {
                let writer = Writer {
                    url: url.to_owned(),
                    shared: shared.clone(),
                    plan,
                    client: None,
                    tasks: Vec::new(),
                    next_task: 0,
                    seed: number as u64 * 7919 + 17,
                    next_instance: number,
                    backoff: RECONNECT_MIN,
                    stats: WriterStats::default(),
                };
                tokio::spawn(writer.run(finish.subscribe()))
            })
            .collect();
        Load { finish, writers }
    }

    /// Tells every writer to complete its tasks and stop; their figures, added up.
    pub async fn finish(self) -> WriterStats {
        self.finish.send_replace(true);
        let mut total = WriterStats::default();
        for writer in self.writers {
            let stats = writer.await.expect("a soak writer panicked");
            total.inserts += stats.inserts;
            total.errors += stats.errors;
            total.reconnects += stats.reconnects;
            total.tasks_started += stats.tasks_started;
            total.tasks_completed += stats.tasks_completed;
            total.tasks_left_open += stats.tasks_left_open;
        }
        total
    }
}

/// The session of a task: one per task, so that the stream of a task is exactly its rows.
pub fn session_of(task: &str) -> String {
    format!("{task}-s")
}

/// A task being written.
struct Task {
    id: String,
    next_index: u64,
    /// Events left before it completes (`u64::MAX`: until the end).
    left: u64,
}

struct Writer {
    url: String,
    shared: Arc<Shared>,
    plan: WriterPlan,
    client: Option<Client>,
    tasks: Vec<Task>,
    next_task: u64,
    seed: u64,
    /// The instance its next HTTP request goes to (HTTP writers).
    next_instance: usize,
    /// The pause before the next reconnection attempt.
    backoff: Duration,
    stats: WriterStats,
}

impl Writer {
    async fn run(mut self, mut finish: watch::Receiver<bool>) -> WriterStats {
        for _ in 0..self.plan.slots {
            let task = self.start_task().await;
            self.tasks.push(task);
        }
        let period = Duration::from_secs_f64(1.0 / self.plan.rate);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = 0usize;
        while !*finish.borrow() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = finish.changed() => break,
            }
            let slot = turn % self.tasks.len();
            turn += 1;
            self.insert(slot).await;
            if self.tasks[slot].left == 0 {
                let id = self.tasks[slot].id.clone();
                self.complete(&id).await;
                self.tasks[slot] = self.start_task().await;
            }
        }
        let deadline = tokio::time::Instant::now() + FINISH_DEADLINE;
        for id in self.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>() {
            let done = tokio::time::timeout_at(deadline, self.complete(&id)).await;
            if done.is_err() {
                self.stats.tasks_left_open += 1;
            }
        }
        self.stats
    }

    /// Creates the next task (running) and starts its clients.
    async fn start_task(&mut self) -> Task {
        let id = format!("{}{}", self.plan.prefix, self.next_task);
        self.next_task += 1;
        let left = match self.plan.lifetime {
            Some((low, high)) => {
                self.seed = self
                    .seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                low + (self.seed >> 33) % (high - low).max(1)
            }
            None => u64::MAX,
        };
        let sql = "INSERT INTO tasks (id, title, status) VALUES ($1, 'soak', 'InProgress') \
                   ON CONFLICT (id) DO NOTHING";
        while !self.execute(sql, &id).await {}
        self.stats.tasks_started += 1;
        watcher::spawn(&self.shared, &id, &self.plan.watchers);
        Task {
            id,
            next_index: 0,
            left,
        }
    }

    /// One insert into the task in `slot` (its index is used up whatever the outcome).
    async fn insert(&mut self, slot: usize) {
        let task = &mut self.tasks[slot];
        let index = task.next_index;
        task.next_index += 1;
        task.left = task.left.saturating_sub(1);
        let id = task.id.clone();
        let content = payload::content(unix_nanos(), index);
        if self.plan.channel == Channel::Http {
            let body = serde_json::json!({
                "session": session_of(&id),
                "type": "assistant",
                "content": content,
            });
            let path = format!("/tasks/{id}/events");
            if self.http(Method::POST, &path, &body).await == Some(StatusCode::CREATED) {
                self.stats.inserts += 1;
            }
            return;
        }
        let Some(client) = self.connected().await else {
            return;
        };
        let result = client
            .execute(
                "INSERT INTO agent_events (task_id, session_id, event_type, content) \
                 VALUES ($1, $2, 'assistant', $3)",
                &[&id, &session_of(&id), &content],
            )
            .await;
        match result {
            Ok(_) => self.stats.inserts += 1,
            Err(_) => self.failed(),
        }
    }

    /// Completes task `id`, retrying until it is done (PostgreSQL always comes back from a
    /// fault; at the end the caller bounds the wait).
    async fn complete(&mut self, id: &str) {
        if self.plan.channel == Channel::Http {
            let body = serde_json::json!({ "status": "Done" });
            let path = format!("/tasks/{id}");
            while self.http(Method::PUT, &path, &body).await != Some(StatusCode::OK) {
                tokio::time::sleep(self.backoff).await;
            }
        } else {
            let sql = "UPDATE tasks SET status = 'Done' WHERE id = $1";
            while !self.execute(sql, id).await {}
        }
        self.stats.tasks_completed += 1;
    }

    /// One request of the JSON API to the next instance; its status, `None` when it got no
    /// answer. A failure (no answer, or a `5xx` of an instance that drains) counts as an error
    /// and sends the next request to the next instance.
    async fn http(
        &mut self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Option<StatusCode> {
        let instances = &self.shared.instances;
        let addr = instances[self.next_instance % instances.len()];
        let status = request(addr, method, path, body.to_string()).await;
        if status.is_none_or(|status| status.is_server_error()) {
            self.stats.errors += 1;
            self.next_instance += 1;
        }
        status
    }

    /// Runs `sql` with `id`; `false` after a failure (the caller retries).
    async fn execute(&mut self, sql: &str, id: &str) -> bool {
        let Some(client) = self.connected().await else {
            return false;
        };
        match client.execute(sql, &[&id]).await {
            Ok(_) => true,
            Err(_) => {
                self.failed();
                tokio::time::sleep(self.backoff).await;
                false
            }
        }
    }

    /// The connection, reconnecting with backoff if it is gone (`None` only when a reconnect
    /// attempt failed; the caller counts the statement as failed and tries again).
    async fn connected(&mut self) -> Option<&Client> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return self.client.as_ref();
        }
        if self.client.take().is_some() || self.stats.errors > 0 {
            tokio::time::sleep(self.backoff).await;
        }
        match pg::connect(&self.url).await {
            Ok(client) => {
                self.stats.reconnects += u64::from(self.stats.inserts + self.stats.errors > 0);
                self.backoff = RECONNECT_MIN;
                self.client = Some(client);
                self.client.as_ref()
            }
            Err(_) => {
                self.stats.errors += 1;
                self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
                None
            }
        }
    }

    fn failed(&mut self) {
        self.stats.errors += 1;
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
    }
}

/// One request on a new connection to `addr`; its status, `None` without an answer in time.
async fn request(addr: SocketAddr, method: Method, path: &str, body: String) -> Option<StatusCode> {
    let answer = async {
        let mut sender = client::sender(addr).await.ok()?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        Some(sender.send_request(request).await.ok()?.status())
    };
    tokio::time::timeout(HTTP_TIMEOUT, answer)
        .await
        .ok()
        .flatten()
}

/// The held-transaction fault: inserts one event into the hot task and keeps the transaction
/// open for `hold`, so that the hot task's writer waits on its session's row lock. `number`
/// keeps the event's index apart from the writer's.
pub async fn hold_transaction(url: &str, hold: Duration, number: u64) -> Result<(), String> {
    let mut client = pg::connect(url).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| format!("begin: {}", pg_error(&e)))?;
    transaction
        .execute(
            "INSERT INTO agent_events (task_id, session_id, event_type, content) \
             VALUES ($1, $2, 'assistant', $3)",
            &[
                &HOT_TASK,
                &session_of(HOT_TASK),
                &payload::content(unix_nanos(), HELD_BASE + number),
            ],
        )
        .await
        .map_err(|e| format!("insert: {}", pg_error(&e)))?;
    tokio::time::sleep(hold).await;
    transaction
        .commit()
        .await
        .map_err(|e| format!("commit: {}", pg_error(&e)))
}
