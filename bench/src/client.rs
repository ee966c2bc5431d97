//! One SSE client: a hyper HTTP/1 connection over loopback that reads its stream, records the
//! write-to-receive latency of every event, keeps its ledger, and reconnects with
//! `Last-Event-ID` like a browser's EventSource when the stream ends or it is told to.
//!
//! The connection is driven inside the client's own task (no second task per client), and
//! the clock is read once per received chunk: that is when the bytes arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{ACCEPT, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ledger::Ledger;
use crate::payload::unix_nanos;
use crate::shared::Shared;
use crate::sse::{Frame, SseReader};

/// Pause before reconnecting after a stream ended on its own (EventSource waits `retry:`;
/// shorter here so a failure shows up as a reconnect, not as a stall).
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// What a client is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Stay connected (reconnect with the last cursor if the stream ends).
    Run,
    /// Close the connection and wait.
    Drop,
    /// Close the connection and report.
    Stop,
}

/// One client's stream.
#[derive(Debug, Clone)]
pub struct Target {
    /// The request path of its stream.
    pub path: String,
    /// The indexes of its sessions (into the writer's committed counts): one for a single-task
    /// stream, one per task, in `tasks` order, for a multi-task stream.
    pub sessions: Vec<usize>,
    /// A multi-task stream's task ids (empty: a single-task stream).
    pub tasks: Vec<String>,
}

/// What one client measured.
#[derive(Debug)]
pub struct ClientReport {
    /// The sessions it read.
    pub sessions: Vec<usize>,
    /// What it received of each, in the same order.
    pub ledgers: Vec<Ledger>,
    /// Benchmark frames received.
    pub frames: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Connections re-opened after the stream ended unexpectedly.
    pub reconnects: u64,
    /// The first error met, if any.
    pub first_error: Option<String>,
    /// From the first request to its first benchmark event.
    pub first_event_after: Option<Duration>,
    /// When it became level with the current targets.
    pub caught_up_at: Option<Instant>,
}

/// Why one connection ended.
enum Ended {
    /// The fleet's phase changed.
    Told,
    /// The stream ended or failed on its own.
    Failed(String),
}

/// Runs client `id` until the fleet says stop.
pub async fn run(
    id: usize,
    target: Target,
    shared: Arc<Shared>,
    mut control: watch::Receiver<Phase>,
) -> ClientReport {
    let mut report = ClientReport {
        ledgers: target.sessions.iter().map(|_| Ledger::default()).collect(),
        sessions: target.sessions.clone(),
        frames: 0,
        bytes: 0,
        reconnects: 0,
        first_error: None,
        first_event_after: None,
        caught_up_at: None,
    };
    let mut client = Client {
        id,
        shared,
        reader: if target.tasks.is_empty() {
            SseReader::default()
        } else {
            SseReader::multi(&target.tasks)
        },
        latencies: Vec::new(),
        caught_up_generation: 0,
        first_request: None,
        connected_once: false,
        target,
    };
    loop {
        let phase = *control.borrow_and_update();
        match phase {
            Phase::Stop => break,
            Phase::Drop => {
                if control.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Phase::Run => {}
        }
        let ended = client.connection(&mut report, &mut control).await;
        client.reader.connection_ended();
        if let Ended::Failed(error) = ended {
            report.reconnects += 1;
            report.first_error.get_or_insert(error);
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                _ = control.changed() => {}
            }
        }
    }
    report
}

/// Opens an HTTP/1 connection to `addr` (no Nagle: frames are small and latency is measured):
/// the one place the benchmark connects to a system over HTTP/1.1.
pub async fn open<B>(
    addr: SocketAddr,
) -> Result<(SendRequest<B>, Connection<TokioIo<TcpStream>, B>), String>
where
    B: hyper::body::Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect {addr}: {error}"))?;
    let _ = tcp.set_nodelay(true);
    hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|error| format!("handshake: {error}"))
}

/// [`open`], with the connection driven by a task of its own: for request-and-answer clients
/// (writers, publishers, one-shot requests).
pub async fn sender<B>(addr: SocketAddr) -> Result<SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = open(addr).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The request of a stream at `path`, resuming after `cursor` (empty: from the start) with
/// `Last-Event-ID`, as EventSource does.
pub fn stream_request(
    addr: SocketAddr,
    path: &str,
    cursor: &[u8],
) -> Result<Request<Empty<Bytes>>, String> {
    let mut request = Request::get(path)
        .header(HOST, addr.to_string())
        .header(ACCEPT, "text/event-stream");
    if !cursor.is_empty() {
        let value = HeaderValue::from_bytes(cursor)
            .map_err(|_| format!("cursor {cursor:?} is not a valid header value"))?;
        request = request.header("last-event-id", value);
    }
    request
        .body(Empty::new())
        .map_err(|error| format!("request: {error}"))
}

/// A client's working state.
struct Client {
    id: usize,
    target: Target,
    shared: Arc<Shared>,
    reader: SseReader,
    /// Latencies of the chunk being read (µs), reused between chunks.
    latencies: Vec<u64>,
    /// The last target generation it counted itself caught up in.
    caught_up_generation: u64,
    /// When it sent its first request.
    first_request: Option<Instant>,
    /// Whether it was counted as connected.
    connected_once: bool,
}

impl Client {
    /// One connection: request (with the cursor), then read until it ends or the phase
    /// changes.
    async fn connection(
        &mut self,
        report: &mut ClientReport,
        control: &mut watch::Receiver<Phase>,
    ) -> Ended {
        let shared = self.shared.clone();
        let permit = tokio::select! {
            permit = shared.connect_permits.acquire() => permit.expect("the semaphore is never closed"),
            _ = control.changed() => return Ended::Told,
        };
        let (mut sender, connection) = match open(shared.addr).await {
            Ok(pair) => pair,
            Err(error) => return Ended::Failed(error),
        };
        tokio::pin!(connection);
        let request = match stream_request(shared.addr, &self.target.path, self.reader.last_id()) {
            Ok(request) => request,
            Err(error) => return Ended::Failed(error),
        };
        self.first_request.get_or_insert_with(Instant::now);
        let response = tokio::select! {
            response = sender.send_request(request) => response,
            ended = &mut connection => {
                return Ended::Failed(format!("connection ended before the response: {ended:?}"));
            }
            _ = control.changed() => return Ended::Told,
        };
        drop(permit);
        let response = match response {
            Ok(response) => response,
            Err(error) => return Ended::Failed(format!("request: {error}")),
        };
        if response.status() != hyper::StatusCode::OK {
            return Ended::Failed(format!("status {}", response.status()));
        }
        if !self.connected_once {
            self.connected_once = true;
            shared.mark_connected();
        }
        let mut targets = shared.targets.subscribe();
        self.check_caught_up(report, *targets.borrow_and_update());
        let mut body = response.into_body();
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.chunk(report, &data);
                            let generation = *targets.borrow();
                            self.check_caught_up(report, generation);
                        }
                    }
                    Some(Err(error)) => return Ended::Failed(format!("body: {error}")),
                    None => return Ended::Failed("the stream ended".to_owned()),
                },
                ended = &mut connection => {
                    return Ended::Failed(format!("connection ended: {ended:?}"));
                }
                changed = targets.changed() => {
                    if changed.is_ok() {
                        let generation = *targets.borrow_and_update();
                        self.check_caught_up(report, generation);
                    }
                }
                _ = control.changed() => return Ended::Told,
            }
        }
    }

    /// Reads one chunk of the body.
    fn chunk(&mut self, report: &mut ClientReport, data: &Bytes) {
        let arrived_ns = unix_nanos();
        report.bytes += data.len() as u64;
        let record = self.shared.record_latency;
        let latencies = &mut self.latencies;
        let first_request = self.first_request;
        self.reader.feed(data, |frame| {
            if let Frame::Bench(lane, event) = frame {
                report.ledgers[lane].observe(event.index);
                report.frames += 1;
                if record {
                    latencies.push(arrived_ns.saturating_sub(event.written_at_ns) / 1_000);
                }
                if report.first_event_after.is_none() {
                    report.first_event_after = first_request.map(|at| at.elapsed());
                }
            }
        });
        if !self.latencies.is_empty() {
            self.shared.record_latencies(self.id, &self.latencies);
            self.latencies.clear();
        }
    }

    fn check_caught_up(&mut self, report: &mut ClientReport, generation: u64) {
        if generation == 0 || self.caught_up_generation == generation {
            return;
        }
        let reached = report
            .sessions
            .iter()
            .zip(&report.ledgers)
            .all(|(&session, ledger)| ledger.reached(self.shared.committed(session)));
        if reached {
            self.caught_up_generation = generation;
            report.caught_up_at = Some(Instant::now());
            self.shared.mark_caught_up(generation);
        }
    }
}
