//! The same streams over HTTP/2 (cleartext, by prior knowledge) and over TLS (HTTP/2 or
//! HTTP/1.1 by ALPN), with real clients of those protocols (hyper's, on the h2 crate; rustls).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::ledger::{assert_ledger, numbered};
use support::server::{TestServer, fast_config};
use support::sse_parser::{SseEvent, SseParser};
use support::tls::{self, certificate, cleanup};
use support::wait::WAIT;
use taskstream::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Opens `path` over an HTTP/2 connection on `io`; returns the stream's body.
async fn h2_stream<I>(io: I, path: &str) -> hyper::body::Incoming
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response.into_body()
}

/// Reads events from an HTTP/1.1 connection on `io` until `n` have arrived.
async fn h1_events<I>(io: I, path: &str, n: usize) -> Vec<SseEvent>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    read_events(&mut response.into_body(), n).await
}

async fn read_events(body: &mut hyper::body::Incoming, n: usize) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    while events.len() < n {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            events.extend(parser.feed(&data));
        }
    }
    events
}

/// A client that speaks HTTP/2 from its first byte (no upgrade) streams events on the same
/// port as HTTP/1.1 clients.
#[tokio::test]
async fn streams_over_cleartext_http2() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 3).await;
    let io = TcpStream::connect(server.addr()).await.expect("connect");
    let mut body = h2_stream(io, "/tasks/t/events/stream").await;
    assert_ledger(
        &read_events(&mut body, 3).await,
        &numbered("e", 0..3),
        "HTTP/2 replay",
    );
    server.events("t", "s1", "live", 2).await;
    assert_ledger(
        &read_events(&mut body, 2).await,
        &numbered("live", 0..2),
        "HTTP/2 live",
    );
}

/// With a certificate and key, the server speaks TLS and offers HTTP/2 and HTTP/1.1 by ALPN;
/// both stream.
#[tokio::test]
async fn streams_over_tls_with_alpn() {
    let (certified, files) = certificate("tls-alpn");
    let server = TestServer::start(Config {
        tls: Some(files.clone()),
        ..fast_config()
    })
    .await;
    cleanup(&files);
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 2).await;

    for alpn in ["h2", "http/1.1"] {
        let tls = tls::connect(server.addr(), &certified, alpn).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let events = if alpn == "h2" {
            read_events(&mut h2_stream(tls, "/tasks/t/events/stream").await, 2).await
        } else {
            h1_events(tls, "/tasks/t/events/stream", 2).await
        };
        assert_ledger(&events, &numbered("e", 0..2), alpn);
    }
}

/// A cleartext connection to a TLS server is closed rather than served.
#[tokio::test]
async fn tls_servers_do_not_speak_cleartext() {
    let (_certified, files) = certificate("tls-cleartext");
    let server = TestServer::start(Config {
        tls: Some(files.clone()),
        ..fast_config()
    })
    .await;
    cleanup(&files);
    let response = tokio::time::timeout(WAIT, async {
        let io = TcpStream::connect(server.addr()).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = Request::get("/healthz")
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.send_request(request).await
    })
    .await
    .expect("an answer in time");
    assert!(response.is_err(), "no HTTP answer over cleartext");
}
