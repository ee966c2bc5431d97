//! The test harness: one private PostgreSQL cluster per test binary, a fresh database per
//! test, a server on 127.0.0.1:0, a writer connection that acts like an agent, and an SSE
//! client that reads the stream the way a browser does.
//!
//! Tests never use `DATABASE_URL`. The cluster is stopped and removed when the test process
//! exits, however it exits (see `taskstream::embedded_pg`).

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part of the harness

#[cfg(feature = "e2e")]
pub mod e2e;
pub mod sse_parser;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use taskstream::embedded_pg::Cluster;
use taskstream::{Config, Handle};
use tokio::net::TcpStream;
use tokio_postgres::{Client, NoTls};

pub use sse_parser::{SseEvent, SseParser};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// Longest [`TestServer::restart`] lets a server take to stop: give a server that restarts a
/// drain deadline well under this (its streams close spread over the first half of it).
pub const PROMPT_STOP: Duration = Duration::from_secs(5);

/// This test binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("test cluster: {e}")))
}

/// Connects to `url` and drives the connection in the background.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database with the schema applied; returns its URL.
pub async fn fresh_database() -> String {
    let url = empty_database().await;
    taskstream::db::apply_schema(&url)
        .await
        .expect("apply schema");
    url
}

/// A fresh database without even the schema; returns its URL.
pub async fn empty_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = tokio::task::spawn_blocking(cluster)
        .await
        .expect("cluster thread");
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    cluster.url(&name)
}

/// A configuration with short intervals, so tests wait for conditions, not for defaults.
pub fn fast_config() -> Config {
    Config {
        poll_interval: Duration::from_millis(200),
        keepalive: Duration::from_millis(300),
        ..Config::default()
    }
}

/// The JWT secret of the tests that turn authentication on.
pub const SECRET: &str = "test-secret-that-is-long-enough";

/// `config` with authentication on, tokens signed with [`SECRET`].
pub fn with_auth(config: Config) -> Config {
    Config {
        jwt_secret: Some(taskstream::config::Secret(SECRET.to_owned())),
        ..config
    }
}

/// A token signed with [`SECRET`] for `tasks` that expires `ttl` seconds from now (negative:
/// already expired).
pub fn token(tasks: &[&str], ttl: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = serde_json::json!({ "tasks": tasks, "exp": now + ttl });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

/// A server on its own fresh database, plus an agent-like writer connection.
pub struct TestServer {
    /// The running server.
    pub handle: Handle,
    /// Its database.
    pub url: String,
    /// A connection that writes like an agent does.
    pub db: Client,
}

impl TestServer {
    /// Starts a server with `config` on a fresh database.
    pub async fn start(config: Config) -> TestServer {
        let url = fresh_database().await;
        Self::start_on(config, url).await
    }

    /// Starts a server with `config` on an existing database.
    pub async fn start_on(config: Config, url: String) -> TestServer {
        let handle = taskstream::start(config, &url, "127.0.0.1:0".parse().expect("address"))
            .await
            .unwrap_or_else(|e| panic!("start server: {e}"));
        let db = connect(&url).await;
        TestServer { handle, url, db }
    }

    /// Shuts this server down as a deploy does (its open streams end and their clients
    /// reconnect) and starts a new one with `config` on the same address and database. Fails
    /// if the old one takes longer than [`PROMPT_STOP`] to stop: open streams must end by
    /// themselves on shutdown.
    pub async fn restart(self, config: Config) -> TestServer {
        let addr = self.addr();
        self.handle.shutdown();
        let started = Instant::now();
        tokio::time::timeout(WAIT, self.handle.stopped())
            .await
            .expect("the server stops");
        let took = started.elapsed();
        assert!(took < PROMPT_STOP, "the server took {took:?} to stop");
        let handle = taskstream::start(config, &self.url, addr)
            .await
            .unwrap_or_else(|e| panic!("restart the server on {addr}: {e}"));
        TestServer {
            handle,
            url: self.url,
            db: self.db,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Creates a task with `status`.
    pub async fn task(&self, id: &str, status: &str) {
        self.db
            .execute(
                "INSERT INTO tasks (id, title, status) VALUES ($1, $2, $3)",
                &[&id, &format!("task {id}"), &status],
            )
            .await
            .expect("insert task");
    }

    /// Inserts an event as an agent does; returns its seq.
    pub async fn event(&self, task: &str, session: &str, event_type: &str, content: &str) -> i64 {
        insert_event(&self.db, task, session, event_type, content).await
    }

    /// Inserts `n` assistant events `prefix 0` … `prefix n-1`.
    pub async fn events(&self, task: &str, session: &str, prefix: &str, n: usize) {
        for i in 0..n {
            self.event(task, session, "assistant", &format!("{prefix} {i}"))
                .await;
        }
    }

    /// Sets a task's status.
    pub async fn status(&self, task: &str, status: &str) {
        self.db
            .execute(
                "UPDATE tasks SET status = $2 WHERE id = $1",
                &[&task, &status],
            )
            .await
            .expect("update status");
    }

    /// Opens the event stream of `task` with extra request headers and a query string.
    pub async fn stream(&self, task: &str) -> Sse {
        Sse::get(self.addr(), &format!("/tasks/{task}/events/stream"), &[]).await
    }
}

/// Inserts an event on `db`; returns its seq.
pub async fn insert_event(
    db: &impl tokio_postgres::GenericClient,
    task: &str,
    session: &str,
    event_type: &str,
    content: &str,
) -> i64 {
    db.query_one(
        "INSERT INTO agent_events (task_id, session_id, event_type, content)
         VALUES ($1, $2, $3, $4) RETURNING seq",
        &[&task, &session, &event_type, &content],
    )
    .await
    .expect("insert event")
    .get(0)
}

/// Waits until `condition` holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One HTTP/1.1 request's response, read as an event stream.
pub struct Sse {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    body: Incoming,
    /// The parser, with the comments and `retry` it saw.
    pub parser: SseParser,
    queue: VecDeque<SseEvent>,
    /// Raw bytes received, for byte-level checks.
    pub raw: Vec<u8>,
    ended: bool,
}

impl Sse {
    /// Sends `GET path` with `headers` over a new connection.
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::request("GET", addr, path, headers).await
    }

    /// Sends `method path` with `headers` over a new connection.
    pub async fn request(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Sse {
        Sse::try_request(method, addr, path, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Like [`Sse::request`], but a refused connection or a failed exchange is an `Err`.
    pub async fn try_request(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .map_err(|_| "no response in time".to_owned())?
            .map_err(|e| format!("exchange: {e}"))?;
        let (parts, body) = response.into_parts();
        Ok(Sse {
            status: parts.status,
            headers: parts.headers,
            body,
            parser: SseParser::default(),
            queue: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
        })
    }

    /// The id of the last event received, if any.
    pub fn last_id(&self) -> Option<String> {
        let id = &self.parser.last_id;
        (!id.is_empty()).then(|| id.clone())
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event, `None` when the response ended. Fails the test after [`WAIT`].
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.next_event())
            .await
            .expect("timed out waiting for an event")
    }

    /// The next event if one arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// Reads one more chunk; false when the body ended.
    pub async fn read_more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match self.body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    self.raw.extend_from_slice(&data);
                    let events = self.parser.feed(&data);
                    self.queue.extend(events);
                }
                true
            }
            Some(Err(_)) | None => {
                self.ended = true;
                false
            }
        }
    }

    /// Every event up to and including `complete`; fails if the stream ends without it.
    pub async fn until_complete(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await.expect("stream ended before complete");
            let done = event.event == "complete";
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The next `n` events; fails if the stream ends first.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await.expect("stream ended early"));
        }
        events
    }

    /// Whether the response ends (within [`WAIT`]) with no further event.
    pub async fn ends(&mut self) -> bool {
        self.next().await.is_none()
    }

    /// The whole body as text (for non-stream responses).
    pub async fn text(mut self) -> String {
        while self.read_more().await {}
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The whole body as JSON (for error responses).
    pub async fn json(self) -> serde_json::Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body {text:?} is not JSON: {e}"))
    }
}

/// The `data.content` of each event, for compact assertions.
pub fn contents(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `prefix 0` … `prefix n-1`.
pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// A bare HTTP/1.0 client over a socket with a small receive buffer, for clients that stop
/// reading: nothing is read unless the test asks, so the server's writes back up.
pub struct RawClient {
    stream: TcpStream,
    head: Option<String>,
    pending: Vec<u8>,
    /// Everything read after the response head, parsed.
    pub parser: SseParser,
    /// Events parsed so far.
    pub events: Vec<SseEvent>,
}

impl RawClient {
    /// Connects with a receive buffer of `recv_buffer` bytes and sends `GET path` (HTTP/1.0, so
    /// the body is the raw stream, ended by the close).
    pub async fn get(addr: SocketAddr, path: &str, recv_buffer: u32) -> RawClient {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("send request");
        RawClient {
            stream,
            head: None,
            pending: Vec::new(),
            parser: SseParser::default(),
            events: Vec::new(),
        }
    }

    /// Reads once (waiting up to `wait`); false on end of stream or timeout.
    pub async fn read_some(&mut self, wait: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        let n = match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        let data = &buf[..n];
        if self.head.is_none() {
            self.pending.extend_from_slice(data);
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head = Some(String::from_utf8_lossy(&self.pending[..end]).into_owned());
                let rest = self.pending.split_off(end + 4);
                let events = self.parser.feed(&rest);
                self.events.extend(events);
            }
        } else {
            let events = self.parser.feed(data);
            self.events.extend(events);
        }
        true
    }

    /// Reads until `n` events have arrived (fails after [`WAIT`]).
    pub async fn read_events(&mut self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.events.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events arrived",
                self.events.len()
            );
            self.read_some(Duration::from_millis(200)).await;
        }
    }

    /// Reads until the server closes the connection (fails after [`WAIT`]).
    pub async fn read_to_end(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "the connection stayed open");
            if !self.read_some(Duration::from_millis(200)).await && self.closed().await {
                return;
            }
        }
    }

    async fn closed(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(50), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Asserts that `events` are exactly `expected` contents, in order, once each.
pub fn assert_ledger(events: &[SseEvent], expected: &[String], who: &str) {
    assert_same(&contents(events), expected, who);
}

/// Asserts that `got` is `expected`, naming what is missing or duplicated when it is not.
fn assert_same(got: &[String], expected: &[String], who: &str) {
    if got != expected {
        let missing = expected.iter().filter(|e| !got.contains(e)).count();
        let mut seen = std::collections::HashSet::new();
        let duplicated = got.iter().filter(|e| !seen.insert(*e)).count();
        panic!(
            "{who}: got {} events, expected {} ({missing} missing, {duplicated} duplicated)",
            got.len(),
            expected.len()
        );
    }
}

/// A connection holding an exclusive lock on `agent_events` in an open transaction: every read
/// of events blocks until `ROLLBACK` is sent on it.
pub async fn lock_events_table(url: &str) -> Client {
    let locker = connect(url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE agent_events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock agent_events");
    locker
}

/// How long a following client keeps trying before it gives up.
pub const FOLLOW_DEADLINE: Duration = Duration::from_secs(60);

/// Follows `task`'s stream like a well-behaved client would, across every interruption: when
/// the stream ends without `complete`, when the connection is refused or cut, or on `503`, it
/// waits a little and resumes from its last cursor (on the next address of `addrs`, round
/// robin). Returns every event received before `complete`, in order.
pub async fn follow(addrs: &[SocketAddr], task: &str, mut cursor: Option<String>) -> Vec<SseEvent> {
    let deadline = Instant::now() + FOLLOW_DEADLINE;
    let path = format!("/tasks/{task}/events/stream");
    let mut received = Vec::new();
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "{task}: no complete after {attempt} attempts"
        );
        let addr = addrs[attempt % addrs.len()];
        let headers: Vec<(&str, &str)> = cursor
            .iter()
            .map(|c| ("last-event-id", c.as_str()))
            .collect();
        match Sse::try_request("GET", addr, &path, &headers).await {
            Ok(mut sse) if sse.status == 200 => {
                while let Some(event) = sse.next_within(WAIT).await {
                    cursor = Some(event.id.clone());
                    if event.event == "complete" {
                        return received;
                    }
                    received.push(event);
                }
            }
            Ok(sse) if sse.status == 503 => {}
            Ok(sse) => panic!("{task}: unexpected status {}", sse.status),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50 + 10 * (attempt as u64 % 10))).await;
    }
    unreachable!("the loop returns or panics")
}

/// The task's latest session as a client must see it: `cursor content` per committed row, in
/// seq order.
pub async fn committed(db: &Client, task: &str) -> Vec<String> {
    let rows = db
        .query(
            "SELECT e.session_id, e.seq, e.content FROM agent_events e
             WHERE e.session_id = (SELECT id FROM agent_sessions WHERE task_id = $1
                                   ORDER BY started_at DESC, id DESC LIMIT 1)
             ORDER BY e.seq",
            &[&task],
        )
        .await
        .expect("read the ledger");
    rows.iter()
        .map(|row| {
            let session: String = row.get(0);
            let seq: i64 = row.get(1);
            let content: String = row.get(2);
            format!(
                "{}{seq} {content}",
                taskstream::wire::cursor::session_prefix(&session)
            )
        })
        .collect()
}

/// Received events in the same form as [`committed`].
pub fn ledger_of(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.id,
                e.json()["content"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Asserts that a client received exactly the committed rows: in order, no gap, no duplicate.
pub fn assert_exact(received: &[SseEvent], committed: &[String], who: &str) {
    assert_same(&ledger_of(received), committed, who);
}

/// A load test's count `n`, divided by `TASKSTREAM_LOAD_DIVISOR` when set (for slow machines),
/// but never below 100 so the mechanism is still exercised.
pub fn load_count(n: usize) -> usize {
    let divisor: usize = std::env::var("TASKSTREAM_LOAD_DIVISOR")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    (n / divisor.max(1)).max(100)
}
