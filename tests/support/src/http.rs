//! The HTTP client of the tests: one request over a new HTTP/1.1 connection, and its response,
//! whose body is read whole (text, JSON) or as an event stream, the way a browser reads it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::sse_parser::{SseEvent, SseParser};
use crate::wait::WAIT;

/// The response to one request: its status and headers, then its body, read as the test asks.
pub struct Response {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    body: Incoming,
    /// The event-stream parser of the body, with the comments and `retry` it saw.
    pub parser: SseParser,
    /// Events parsed but not yet returned.
    queue: VecDeque<SseEvent>,
    /// Raw bytes received, for byte-level checks.
    pub raw: Vec<u8>,
    /// Whether the body ended (or failed): nothing more will be read.
    ended: bool,
}

// === impl Response: the request ===

impl Response {
    /// Sends `GET path` with `headers` over a new connection.
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
        Response::request("GET", addr, path, headers).await
    }

    /// Sends `method path` with `headers` and an empty body over a new connection.
    pub async fn request(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        Response::try_request(method, addr, path, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Like [`Response::request`], but a refused connection, a failed exchange or no response
    /// head within [`WAIT`] is an `Err`.
    pub async fn try_request(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        Response::exchange(stream, method, &addr.to_string(), path, headers).await
    }

    /// Sends `method path` with `headers` and `body` over a new connection.
    pub async fn send(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        Response::exchange_body(
            stream,
            method,
            &addr.to_string(),
            path,
            headers,
            body.into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends `method path` with a JSON body (`content-type: application/json`) and `headers`.
    pub async fn json_request(
        method: &str,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Response {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        Response::send(method, addr, path, &all, body.to_string()).await
    }

    /// Sends `method path` to `host` with `headers` and an empty body as HTTP/1.1 over `io`
    /// (a TLS stream, say).
    pub async fn exchange<I>(
        io: I,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Response::exchange_body(io, method, host, path, headers, Bytes::new()).await
    }

    /// Sends `method path` to `host` with `headers` and `body` as HTTP/1.1 over `io`.
    pub async fn exchange_body<I>(
        io: I,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, String>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .map_err(|_| "no response in time".to_owned())?
            .map_err(|e| format!("exchange: {e}"))?;
        let (parts, body) = response.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            parser: SseParser::default(),
            queue: VecDeque::new(),
            raw: Vec::new(),
            ended: false,
        })
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads one more chunk of the body; false when the body ended or failed.
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

    /// The whole body as text (for non-stream responses), including what was read before.
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

// === impl Response: the body as an event stream ===

impl Response {
    /// The id of the last event received, if any.
    pub fn last_id(&self) -> Option<String> {
        let id = &self.parser.last_id;
        (!id.is_empty()).then(|| id.clone())
    }

    /// The next event, `None` when the body ended. Fails the test after [`WAIT`].
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.next_event())
            .await
            .expect("timed out waiting for an event")
    }

    /// The next event if one arrives within `wait`; `None` when none does or the body ended.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        tokio::time::timeout(wait, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// The next event, however long it takes; `None` when the body ended.
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

    /// Whether the body ends with no further event (false: an event came first). Fails the
    /// test if neither happens within [`WAIT`].
    pub async fn ends(&mut self) -> bool {
        self.next().await.is_none()
    }
}
