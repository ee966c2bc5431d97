//! The accept loop and the connections it serves: HTTP/1.1 and HTTP/2 on one port (cleartext
//! HTTP/2 by prior knowledge, or by ALPN under TLS).

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::routes;

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP/2 connection preface; a client is HTTP/2 (prior knowledge) iff it starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often an incomplete preface is looked at again while its sender dawdles.
const PREFACE_RECHECK: Duration = Duration::from_millis(10);

/// Pings on idle HTTP/2 connections, so a vanished peer is noticed (HTTP/1 relies on the
/// stream's keep-alive comments for that).
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Lets a stream task close its whole connection: a client that accepts nothing for the write
/// timeout is disconnected, rather than left holding a socket whose buffers never drain
/// (ending the body alone would leave hyper waiting to flush it). Found in every request's
/// extensions.
#[derive(Debug, Clone, Default)]
pub struct ConnectionAbort(Arc<Notify>);

impl ConnectionAbort {
    /// Closes the connection this request arrived on.
    pub fn abort(&self) {
        self.0.notify_one();
    }
}

/// Accepts connections until shutdown, then waits for open connections to finish, at most
/// until the drain deadline.
pub async fn serve(listener: TcpListener, app: Arc<App>, tls: Option<TlsAcceptor>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .max_buf_size(app.config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .max_header_list_size(u32::try_from(app.config.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let tracker = Arc::new(Tracker {
        count: AtomicUsize::new(0),
        idle: Notify::new(),
        gauge: app.metrics.connections.clone(),
    });
    let mut shutdown = app.shutdown.clone();
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
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let open = Tracker::open(&tracker);
        tokio::spawn(connection(
            stream,
            app.clone(),
            tls.clone(),
            builder.clone(),
            open,
        ));
    }
    drop(listener);
    // Stream tasks end their own bodies on the shutdown signal (spread over the first half of
    // the deadline); connections then finish their last response and close.
    let drained = tokio::time::timeout(app.config.drain_deadline, tracker.idle()).await;
    if drained.is_err() {
        tracing::warn!(
            open = tracker.count.load(Ordering::Acquire),
            "drain deadline passed with connections still open"
        );
    }
}

/// Counts open connections, so that shutdown can wait for them to finish.
#[derive(Debug)]
struct Tracker {
    count: AtomicUsize,
    idle: Notify,
    /// The same count, for `/metrics`.
    gauge: Gauge,
}

/// One open connection; dropping it (the connection ended) updates the count.
#[derive(Debug)]
struct Open(Arc<Tracker>);

impl Tracker {
    fn open(tracker: &Arc<Tracker>) -> Open {
        tracker.count.fetch_add(1, Ordering::AcqRel);
        tracker.gauge.inc();
        Open(tracker.clone())
    }

    /// Resolves once no connection is open.
    async fn idle(&self) {
        loop {
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.gauge.dec();
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One connection, from its first byte (or TLS handshake) to its end.
async fn connection(
    stream: TcpStream,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    _open: Open,
) {
    let deadline = Instant::now() + app.config.header_timeout;
    match tls {
        None => {
            // hyper-util's auto builder reads the protocol preface with no timeout of its own:
            // a client that connects and sends nothing would hold the connection forever.
            if !preface_arrives(&stream, deadline).await {
                return;
            }
            serve_http(stream, app, &builder).await;
        }
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve_http(stream, app, &builder).await,
            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

/// Serves HTTP on an established connection until it ends or is aborted. On shutdown it stops
/// taking new requests and finishes the ones in flight (a stream's own task ends its body).
async fn serve_http<I>(io: I, app: Arc<App>, builder: &auto::Builder<TokioExecutor>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let abort = ConnectionAbort::default();
    let aborted = abort.0.clone();
    let mut shutdown = app.shutdown.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(abort.clone());
        routes::handle(app.clone(), req)
    });
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut draining = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = aborted.notified() => {
                tracing::debug!("connection closed: slow client");
                return;
            }
            _ = shutdown.wait(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2 — its first byte, or all
/// of a matching HTTP/2 preface — or gives up at `deadline` (or when it closes).
async fn preface_arrives(stream: &TcpStream, deadline: Instant) -> bool {
    let mut seen = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if n == H2_PREFACE.len() || seen[..n] != H2_PREFACE[..n] {
            return true;
        }
        // Part of an HTTP/2 preface: peek again once more may have arrived.
        if Instant::now() + PREFACE_RECHECK > deadline {
            return false;
        }
        tokio::time::sleep(PREFACE_RECHECK).await;
    }
}
