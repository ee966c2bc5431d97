//! Idle HTTP/2 streams: cleartext HTTP/2 connections (prior knowledge, as a proxy such as envoy
//! speaks to its upstream and as browsers speak over TLS), each carrying many streams of one
//! task, held open while nothing but keep-alives arrive. Only for measuring what an idle
//! stream costs the server; the HTTP/1.1 fleet ([`crate::fleet`]) measures delivery.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Open connections and the streams they carry; dropping it closes them all.
pub struct H2Idle {
    /// One task per connection (driving it) and one per stream (draining its keep-alives).
    tasks: JoinSet<()>,
}

/// Opens `connections` HTTP/2 connections to `addr` with `per_connection` streams of `path`
/// each, and waits until every stream has answered `200`, at most until `deadline`.
pub async fn open(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    per_connection: usize,
    deadline: Duration,
) -> Result<H2Idle, String> {
    let until = Instant::now() + deadline;
    let mut tasks = JoinSet::new();
    let mut streams = 0;
    for c in 0..connections {
        let socket = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connection {c}: connect: {e}"))?;
        let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .map_err(|e| format!("connection {c}: HTTP/2 handshake: {e}"))?;
        tasks.spawn(async move {
            let _ = connection.await;
        });
        let mut answers = JoinSet::new();
        for _ in 0..per_connection {
            let request = hyper::Request::get(format!("http://{addr}{path}"))
                .header("accept", "text/event-stream")
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("build the request: {e}"))?;
            let answer = sender.send_request(request);
            answers.spawn(answer);
        }
        loop {
            let next = tokio::time::timeout_at(until.into(), answers.join_next())
                .await
                .map_err(|_| format!("only {streams} streams opened before the deadline"))?;
            let Some(answer) = next else { break };
            let response = answer
                .map_err(|e| format!("connection {c}: a stream task failed: {e}"))?
                .map_err(|e| format!("connection {c}: a stream failed: {e}"))?;
            if response.status() != hyper::StatusCode::OK {
                return Err(format!(
                    "connection {c}: a stream answered {}",
                    response.status()
                ));
            }
            streams += 1;
            let mut body = response.into_body();
            tasks.spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        }
    }
    Ok(H2Idle { tasks })
}

impl H2Idle {
    /// Closes every stream and connection.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
