//! The accept loop and the connections it serves: HTTP/1.1 and HTTP/2 on one port (cleartext
//! HTTP/2 by prior knowledge, or by ALPN under TLS).
//!
//! We tell the protocols apart ourselves (the HTTP/2 preface, or ALPN) and hand the connection
//! to hyper's HTTP/1 or HTTP/2 connection directly, rather than through hyper-util's `auto`
//! builder: that builder reads the preface with no timeout, rewinds it through an extra buffer,
//! and every connection's future carries the state of both protocols. Connections are
//! long-lived here (one per open stream), so each byte of their state counts thousands of
//! times; the rarer paths (HTTP/2, TLS) are boxed so that they cost nothing to the common one.

use std::fmt::Display;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::client_stream::ConnectionAbort;
use crate::http::idle::Activity;
use crate::http::router::Router;

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP/2 connection preface; a client is HTTP/2 (prior knowledge) iff it starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often an incomplete preface is looked at again while its sender dawdles.
const PREFACE_RECHECK: Duration = Duration::from_millis(10);

/// Pings on idle HTTP/2 connections, so a vanished peer is noticed (HTTP/1 relies on the
/// stream's keep-alive comments for that).
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// The two protocol builders, configured once.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(app: &App) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(app.config.header_timeout)
            .max_buf_size(app.config.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .max_concurrent_streams(app.config.http2_max_streams)
            .max_header_list_size(u32::try_from(app.config.max_header_bytes).unwrap_or(u32::MAX));
        Protocols { http1, http2 }
    }
}

/// Accepts connections until shutdown, then waits for open connections to finish, at most
/// until the drain deadline.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>, tls: Option<TlsAcceptor>) {
    let protocols = Arc::new(Protocols::new(&app));
    let tracker = Arc::new(Tracker {
        open: app.metrics.connections.clone(),
        idle: Notify::new(),
    });
    let mut shutdown = app.shutdown.clone();
    let limit = app.config.connection_limit();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        if usize::try_from(tracker.open.get()).unwrap_or(0) >= limit {
            // Closed at once rather than left in the backlog: the client learns now, and a
            // flood of connections costs no more than the limit.
            app.metrics.connections_refused.inc();
            drop(stream);
            continue;
        }
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let open = Tracker::open(&tracker);
        let (app, protocols) = (app.clone(), protocols.clone());
        match &tls {
            None => tokio::spawn(cleartext(stream, app, protocols, open)),
            Some(acceptor) => tokio::spawn(Box::pin(secure(
                stream,
                acceptor.clone(),
                app,
                protocols,
                open,
            ))),
        };
    }
    drop(listener);
    // Stream tasks end their own bodies on the shutdown signal (spread over the first half of
    // the deadline); connections then finish their last response and close.
    let drained = tokio::time::timeout(app.config.drain_deadline, tracker.idle()).await;
    if drained.is_err() {
        tracing::warn!(
            open = tracker.open.get(),
            "drain deadline passed with connections still open"
        );
    }
}

/// Counts open connections (in the `connections` gauge of `/metrics`), so that shutdown can
/// wait for them to finish.
#[derive(Debug)]
struct Tracker {
    open: Gauge,
    idle: Notify,
}

/// One open connection; dropping it (the connection ended) updates the count.
#[derive(Debug)]
struct Open(Arc<Tracker>);

impl Tracker {
    fn open(tracker: &Arc<Tracker>) -> Open {
        tracker.open.inc();
        Open(tracker.clone())
    }

    /// Resolves once no connection is open.
    async fn idle(&self) {
        loop {
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.open.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // `dec` returns the count before: 1 means this was the last connection.
        if self.0.open.dec() == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A cleartext connection: HTTP/2 if it starts with the preface, HTTP/1.1 otherwise.
async fn cleartext(stream: TcpStream, app: Arc<App>, protocols: Arc<Protocols>, _open: Open) {
    let deadline = Instant::now() + app.config.header_timeout;
    if let Some(protocol) = preface(&stream, deadline).await {
        connection(stream, protocol, app, &protocols).await;
    }
}

/// A TLS connection: the protocol is the one ALPN chose (HTTP/1.1 without ALPN).
async fn secure(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    protocols: Arc<Protocols>,
    _open: Open,
) {
    let deadline = Instant::now() + app.config.header_timeout;
    let stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    let protocol = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    connection(stream, protocol, app, &protocols).await;
}

/// Serves one connection in `protocol` (boxed for HTTP/2, so that the common HTTP/1 future
/// stays small).
async fn connection<I>(io: I, protocol: Protocol, app: Arc<App>, protocols: &Protocols)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let abort = ConnectionAbort::default();
    let io = TokioIo::new(io);
    match protocol {
        Protocol::Http1 => {
            let router = Router::new(app.clone(), abort.clone(), None);
            let connection = protocols.http1.serve_connection(io, router);
            drive(connection, &app, abort, Box::pin(std::future::pending())).await;
        }
        Protocol::Http2 => {
            let activity = Activity::default();
            let router = Router::new(app.clone(), abort.clone(), Some(activity.clone()));
            let connection = protocols.http2.serve_connection(io, router);
            let idle = Box::pin(activity.idle_for(app.config.idle_timeout));
            Box::pin(drive(connection, &app, abort, idle)).await;
        }
    }
}

/// Serves a connection until it ends or is aborted. On shutdown, or once `idle` resolves (an
/// HTTP/2 connection with no open stream for the idle timeout), it stops taking new requests
/// and finishes the ones in flight (a stream's own task ends its body).
async fn drive<C>(connection: C, app: &App, abort: ConnectionAbort, mut idle: Idle)
where
    C: GracefulConnection,
    C::Error: Display,
{
    let mut connection = pin!(connection);
    let mut shutdown = app.shutdown.clone();
    let mut draining = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = abort.aborted() => {
                tracing::debug!("connection closed: slow client");
                return;
            }
            _ = shutdown.wait(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = idle.as_mut(), if !draining => {
                tracing::debug!("connection closed: idle");
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when a connection has been idle too long; never, for HTTP/1 (boxed: a pending
/// future is zero-sized, so that costs HTTP/1 connections no allocation).
type Idle = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which protocol a cleartext client speaks.
enum Protocol {
    Http1,
    Http2,
}

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2 — its first byte, or all
/// of a matching HTTP/2 preface — or gives up (`None`) at `deadline` or when it closes. A
/// client that connects and sends nothing is thereby closed after the header timeout.
async fn preface(stream: &TcpStream, deadline: Instant) -> Option<Protocol> {
    let mut seen = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if seen[..n] != H2_PREFACE[..n] {
            return Some(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Some(Protocol::Http2);
        }
        // Part of an HTTP/2 preface: peek again once more may have arrived.
        if Instant::now() + PREFACE_RECHECK > deadline {
            return None;
        }
        tokio::time::sleep(PREFACE_RECHECK).await;
    }
}
