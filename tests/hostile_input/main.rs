//! Hostile input, tried the way an attacker would, over a real socket: malformed requests
//! ([`requests`]) and JSON API bodies ([`bodies`]), ids the database cannot take ([`ids`]),
//! token edges ([`tokens`]), cookies ([`cookies`]), connections and HTTP/2 streams beyond the
//! limits ([`connections`]), readers that pin memory ([`memory`]) and a database that stops
//! answering ([`database`]). None may get a 500, a panic (a dropped connection), a hang, or
//! deny service to other clients.

mod bodies;
mod connections;
mod cookies;
mod database;
mod ids;
mod memory;
mod requests;
mod tokens;

use std::net::SocketAddr;

use support::wait::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes as a request and returns the response's status code (`None`: the server
/// closed the connection without answering).
async fn status_of(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&byte[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1)?.parse().ok()
}

/// A request's bytes: `method target HTTP/1.1` with a `Host` and `headers`.
fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}
