//! Global limits no client can get around: connections beyond `--max-connections`, HTTP/2
//! streams beyond the per-connection maximum, HTTP/2 connections that hold no stream, and
//! bursts of `/readyz` probes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::http::Response;
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use taskstream::Config;
use taskstream::metrics::QueryKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{request, status_of};

/// Beyond `--max-connections` a new connection is accepted and closed at once (and counted),
/// not left waiting; once one closes, the next is served.
#[tokio::test]
async fn connections_beyond_the_maximum_are_closed_at_once() {
    let server = TestServer::start(Config {
        max_connections: Some(3),
        header_timeout: Duration::from_secs(60),
        ..fast_config()
    })
    .await;
    let metrics = server.handle.metrics();
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    eventually("three open connections", || metrics.connections.get() == 3).await;

    let mut refused = TcpStream::connect(server.addr()).await.expect("accepted");
    let _ = refused.write_all(&request("GET", "/healthz", &[])).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, refused.read(&mut byte))
        .await
        .expect("closed at once, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "closed without an answer");
    assert_eq!(metrics.connections_refused.get(), 1);

    drop(idle.pop());
    eventually("a free place", || metrics.connections.get() == 2).await;
    let status = status_of(server.addr(), &request("GET", "/healthz", &[])).await;
    assert_eq!(status, Some(200));
}

/// An HTTP/2 connection: its request sender, and the task driving it (which ends when the
/// server closes the connection).
async fn h2_connection(
    server: &TestServer,
    ping_every: Option<Duration>,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let io = TcpStream::connect(server.addr()).await.expect("connect");
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(every) = ping_every {
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(every)
            .keep_alive_while_idle(true);
    }
    let (sender, connection) = builder
        .handshake(TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

/// Reads `body` until `text` has arrived (failing if it ends first or after [`WAIT`]).
async fn read_until(body: &mut Incoming, text: &str) {
    let mut data = Vec::new();
    while !String::from_utf8_lossy(&data).contains(text) {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("data in time")
            .expect("the stream goes on")
            .expect("a frame");
        data.extend_from_slice(&frame.into_data().unwrap_or_default());
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://localhost{path}"))
        .body(Empty::new())
        .expect("request")
}

/// One HTTP/2 connection gets at most `--http2-max-streams` streams at once: a further one
/// waits until one of them closes (the server announced the limit), and never takes a stream
/// slot meanwhile.
#[tokio::test]
async fn http2_streams_per_connection_are_limited() {
    let server = TestServer::start(Config {
        http2_max_streams: 2,
        ..fast_config()
    })
    .await;
    server.task("t", "InProgress").await;
    let (sender, _driver) = h2_connection(&server, None).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = sender
            .clone()
            .send_request(get("/tasks/t/events/stream"))
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        open.push(response.into_body());
    }
    let third = tokio::spawn({
        let mut sender = sender.clone();
        async move { sender.send_request(get("/tasks/t/events/stream")).await }
    });
    // The connection goes on serving its two streams while the third waits.
    server.event("t", "s1", "assistant", "live").await;
    for body in &mut open {
        read_until(body, "live").await;
    }
    assert!(!third.is_finished(), "the third stream waits for a place");
    assert_eq!(server.handle.metrics().open_streams.get(), 2);

    drop(open.remove(0));
    let third = tokio::time::timeout(WAIT, third)
        .await
        .expect("served once a place is free")
        .expect("task")
        .expect("response");
    assert_eq!(third.status(), 200);
}

/// An HTTP/2 connection with no open stream is closed after `--idle-timeout`, although it
/// answers pings (its client even sends its own); one with an open stream stays.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let server = TestServer::start(Config {
        idle_timeout: Duration::from_millis(500),
        ..fast_config()
    })
    .await;
    server.task("t", "InProgress").await;
    let (mut streaming, _driver) = h2_connection(&server, None).await;
    let mut stream = streaming
        .send_request(get("/tasks/t/events/stream"))
        .await
        .expect("a stream")
        .into_body();

    let (mut idle, driver) = h2_connection(&server, Some(Duration::from_millis(100))).await;
    let health = idle.send_request(get("/healthz")).await.expect("health");
    assert_eq!(health.status(), 200);
    drop(health);
    tokio::time::timeout(WAIT, driver)
        .await
        .expect("the idle connection is closed")
        .expect("driver");
    eventually("one connection left", || {
        server.handle.metrics().connections.get() == 1
    })
    .await;

    server.event("t", "s1", "assistant", "still here").await;
    read_until(&mut stream, "still here").await;
}

/// A thousand concurrent `/readyz` requests cost PostgreSQL at most two queries: they are
/// answered from one health state that one query at a time refreshes.
#[tokio::test]
async fn a_burst_of_readiness_probes_costs_at_most_two_queries() {
    taskstream::raise_open_files_limit().expect("open files limit");
    let server = TestServer::start(fast_config()).await;
    let metrics = server.handle.metrics();
    let before = metrics.query_count(QueryKind::Ping);
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    let probe = request("GET", "/readyz", &[("Connection", "close")]);
    let statuses = join_all(clients.into_iter().map(|mut client| {
        let probe = probe.clone();
        async move {
            client.write_all(&probe).await.expect("send");
            let mut answer = Vec::new();
            tokio::time::timeout(WAIT, client.read_to_end(&mut answer))
                .await
                .expect("an answer in time")
                .expect("read");
            String::from_utf8_lossy(&answer).into_owned()
        }
    }))
    .await;
    for answer in &statuses {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let queries = metrics.query_count(QueryKind::Ping) - before;
    assert!(
        (1..=2).contains(&queries),
        "{queries} queries for 1000 probes"
    );
    assert_eq!(
        Response::get(server.addr(), "/readyz", &[]).await.status,
        200
    );
}
