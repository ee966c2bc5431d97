//! The writer: inserts events into sessions at a set pace, the way agents do
//! (`INSERT INTO agent_events …` on its own connection, one autocommit statement per event),
//! and, for the nchan peer, publishes each committed event to nchan as well.
//!
//! Each event's content is `{"t":<unix nanos>,"n":<index>}`: the time the insert was issued and
//! the event's index in its session, which is also its commit order there. Inserts are
//! pipelined on the one connection (up to a window in flight) so that a fast pace is not
//! bounded by round trips; each is sent before the next is created, so they commit in index
//! order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::{Client, Statement};

use crate::client;
use crate::payload::{self, unix_nanos};
use crate::pg::{self, pg_error};
use crate::session::Session;

/// The statement agents run. `seq` comes from the trigger.
const INSERT: &str = "INSERT INTO agent_events (task_id, session_id, event_type, content) \
                      VALUES ($1, $2, 'assistant', $3)";

/// Connections publishing to nchan. Sessions are spread over them (a session always uses the
/// same one, so its events stay in order) so that one slow POST does not hold up the others.
const PUBLISH_CONNECTIONS: usize = 4;

/// How fast to write.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Events per second over all sessions.
    Rate(f64),
    /// As fast as the window of inserts in flight allows.
    Max,
}

/// One batch of writing.
#[derive(Debug, Clone, Copy)]
pub struct WriteSpec {
    /// Events to write, round-robin over the sessions.
    pub events: u64,
    /// Stop early after this long, if set.
    pub duration: Option<Duration>,
    /// How fast.
    pub pace: Pace,
    /// Inserts in flight at most.
    pub window: usize,
}

/// What a batch achieved.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WriteReport {
    /// Events committed (and published, for nchan).
    pub events: u64,
    /// From the first insert to the last commit (and publish).
    pub seconds: f64,
    /// `events / seconds`.
    pub rate: f64,
}

/// A writer connection and what it has committed so far.
pub struct Writer {
    client: Client,
    insert: Statement,
    sessions: Arc<Vec<Session>>,
    /// Per session: events committed so far (the next index).
    committed: Vec<u64>,
    publisher: Option<Publisher>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("sessions", &self.sessions.len())
            .field("committed", &self.committed.iter().sum::<u64>())
            .finish()
    }
}

type Insert<'a> = Pin<Box<dyn Future<Output = (usize, String, Result<u64, String>)> + Send + 'a>>;

impl Writer {
    /// Connects to `database_url`; with `nchan`, every committed event is also published there.
    pub async fn connect(
        database_url: &str,
        sessions: Arc<Vec<Session>>,
        nchan: Option<SocketAddr>,
    ) -> Result<Writer, String> {
        let client = pg::connect(database_url).await?;
        let insert = client
            .prepare(INSERT)
            .await
            .map_err(|e| format!("prepare insert: {}", pg_error(&e)))?;
        let committed = vec![0; sessions.len()];
        Ok(Writer {
            client,
            insert,
            sessions,
            committed,
            publisher: nchan.map(Publisher::start),
        })
    }

    /// Per session, the events committed so far.
    pub fn committed(&self) -> &[u64] {
        &self.committed
    }

    /// Writes one batch. Fails on the first insert or publish error: a benchmark whose writer
    /// fails measures nothing.
    pub async fn write(&mut self, spec: WriteSpec) -> Result<WriteReport, String> {
        let Writer {
            client,
            insert,
            sessions,
            committed,
            publisher,
        } = self;
        let client: &Client = client;
        let mut issued: Vec<u64> = committed.clone();
        let mut inflight: FuturesOrdered<Insert<'_>> = FuturesOrdered::new();
        let started = Instant::now();
        let stop_at = spec.duration.map(|d| started + d);
        let mut sent = 0u64;
        let mut done = 0u64;
        let window = spec.window.max(1);
        loop {
            let more = sent < spec.events && stop_at.is_none_or(|at| Instant::now() < at);
            if !more && inflight.is_empty() {
                break;
            }
            let due = match spec.pace {
                Pace::Max => started,
                Pace::Rate(rate) => started + Duration::from_secs_f64(sent as f64 / rate),
            };
            tokio::select! {
                biased;
                Some((session, content, result)) = inflight.next(), if !inflight.is_empty() => {
                    result.map_err(|e| format!("insert into {}: {e}", sessions[session].session))?;
                    committed[session] += 1;
                    done += 1;
                    if let Some(publisher) = publisher {
                        publisher.publish(session, &sessions[session].task, content)?;
                    }
                }
                _ = tokio::time::sleep_until(due), if more && inflight.len() < window => {
                    let session = (sent % sessions.len() as u64) as usize;
                    let index = issued[session];
                    issued[session] += 1;
                    sent += 1;
                    let content = payload::content(unix_nanos(), index);
                    let s = &sessions[session];
                    let statement = insert.clone();
                    let mut future: Insert<'_> = Box::pin(async move {
                        let result = client
                            .execute(&statement, &[&s.task, &s.session, &content])
                            .await
                            .map_err(|e| pg_error(&e));
                        (session, content, result)
                    });
                    // The first poll sends the statement: inserts leave in index order
                    // whatever order the set polls them in later.
                    if let Poll::Ready(output) = futures_util::poll!(&mut future) {
                        future = Box::pin(std::future::ready(output));
                    }
                    inflight.push_back(future);
                }
            }
        }
        if let Some(publisher) = publisher {
            publisher.flush().await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(WriteReport {
            events: done,
            seconds,
            rate: if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            },
        })
    }

    /// Checks the ledger's reference against the table: every session holds exactly the
    /// events the writer committed, numbered 1..=committed with no gap (so a client's ledger
    /// compares against what is really stored, not only against what the writer believes).
    pub async fn verify_table(&self) -> Result<(), String> {
        let ids: Vec<&str> = self.sessions.iter().map(|s| s.session.as_str()).collect();
        let rows = self
            .client
            .query(
                "SELECT session_id, count(*), coalesce(max(seq), 0) FROM agent_events \
                 WHERE session_id = ANY($1) GROUP BY session_id",
                &[&ids],
            )
            .await
            .map_err(|e| format!("read the table back: {}", pg_error(&e)))?;
        for (session, &committed) in self.sessions.iter().zip(&self.committed) {
            let (count, max_seq) = rows
                .iter()
                .find(|row| row.get::<_, &str>(0) == session.session)
                .map_or((0, 0), |row| (row.get::<_, i64>(1), row.get::<_, i64>(2)));
            let committed = i64::try_from(committed).unwrap_or(i64::MAX);
            if count != committed || max_seq != committed {
                return Err(format!(
                    "session {} holds {count} events (last seq {max_seq}) but the writer \
                     committed {committed}",
                    session.session
                ));
            }
        }
        Ok(())
    }

    /// The PostgreSQL connection, for scenarios that change the schema around a write.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

// === impl Publisher ===

/// What a publishing connection is asked to do.
enum Publish {
    /// POST this event to this channel.
    Event { channel: String, body: Bytes },
    /// Answer once everything before has been published.
    Flush(oneshot::Sender<()>),
}

/// Publishes committed events to nchan over a few keep-alive connections.
struct Publisher {
    connections: Vec<mpsc::UnboundedSender<Publish>>,
    /// The first publish error, if any.
    error: Arc<Mutex<Option<String>>>,
}

impl Publisher {
    fn start(addr: SocketAddr) -> Publisher {
        let error = Arc::new(Mutex::new(None));
        let connections = (0..PUBLISH_CONNECTIONS)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(publish_loop(addr, rx, error.clone()));
                tx
            })
            .collect();
        Publisher { connections, error }
    }

    /// Queues the event: the same data JSON as taskstream's `assistant` frame.
    fn publish(&self, session: usize, channel: &str, content: String) -> Result<(), String> {
        self.check()?;
        let body = serde_json::json!({ "content": content }).to_string();
        self.connections[session % self.connections.len()]
            .send(Publish::Event {
                channel: channel.to_owned(),
                body: Bytes::from(body),
            })
            .map_err(|_| "the nchan publisher stopped".to_owned())
    }

    /// Waits until every queued event is published.
    async fn flush(&self) -> Result<(), String> {
        let mut waits = Vec::new();
        for connection in &self.connections {
            let (tx, rx) = oneshot::channel();
            if connection.send(Publish::Flush(tx)).is_ok() {
                waits.push(rx);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        match &*self.error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

async fn publish_loop(
    addr: SocketAddr,
    mut requests: mpsc::UnboundedReceiver<Publish>,
    error: Arc<Mutex<Option<String>>>,
) {
    let mut sender = None;
    while let Some(request) = requests.recv().await {
        let (channel, body) = match request {
            Publish::Event { channel, body } => (channel, body),
            Publish::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Err(message) = publish_one(addr, &mut sender, &channel, body).await {
            error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(message);
            sender = None;
        }
    }
}

async fn publish_one(
    addr: SocketAddr,
    sender: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    channel: &str,
    body: Bytes,
) -> Result<(), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let new_sender = client::sender(addr)
            .await
            .map_err(|e| format!("nchan publisher: {e}"))?;
        *sender = Some(new_sender);
    }
    let sender = sender.as_mut().expect("set just above");
    sender
        .ready()
        .await
        .map_err(|e| format!("nchan publisher: {e}"))?;
    let request = Request::post(format!("/pub/{channel}"))
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header("x-eventsource-event", "assistant")
        .body(Full::new(body))
        .map_err(|e| format!("nchan publish request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("nchan publish: {e}"))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("nchan publish answered {status}"))
    }
}
