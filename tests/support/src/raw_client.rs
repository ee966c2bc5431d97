//! A client that stops reading: a bare HTTP/1.0 request over a socket with a small receive
//! buffer, which reads nothing unless the test asks, so the server's writes back up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::sse_parser::{SseEvent, SseParser};
use crate::wait::WAIT;

/// One event-stream request whose response is read only when the test asks.
pub struct RawClient {
    stream: TcpStream,
    /// The response head, once its end has arrived.
    head: Option<String>,
    /// What arrived before the end of the response head.
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
        let socket = TcpSocket::new_v4().expect("socket");
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

    /// Reads once (waiting up to `wait`); false on end of stream, a failed read or timeout.
    pub async fn read_some(&mut self, wait: Duration) -> bool {
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

    /// Whether the server closed the connection: a read within 50 ms finds end of stream or
    /// fails. A byte that arrives instead is dropped, so call this only to wait for the close.
    async fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(50), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
