//! The accept loop and the connections it serves (HTTP/1.1 and cleartext HTTP/2 on one port).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::routes;

/// Longest a client may take to send a request's headers (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the server waits for connections to finish once shutdown starts. Stream tasks end
/// their own bodies on the shutdown signal; this bounds whatever is left.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
/// for the drain deadline.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
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
        let app = app.clone();
        let abort = ConnectionAbort::default();
        let aborted = abort.0.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(abort.clone());
            routes::handle(app.clone(), req)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = aborted.notified() => tracing::debug!("connection closed: slow client"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_DEADLINE) => {
            tracing::warn!("drain deadline passed with connections still open");
        }
    }
}
