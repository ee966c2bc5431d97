//! The receiving side of a stream: the response body that hyper polls, the count of bytes
//! queued for it, and the handle that lets a stream close its whole connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc};

/// What the response body yields.
pub(crate) type BodyFrame = Result<Frame<Bytes>, Infallible>;

/// The response body of a stream: whatever its stream task sends, until it drops the sender.
pub(crate) type EventBody = StreamBody<FrameReceiver>;

/// The receiving half of a stream's channel, as the `Stream` that [`StreamBody`] wants. The
/// channel carries bare `Bytes` (32 bytes a slot) and they become frames here: a channel of
/// `Frame`s would cost three times the memory per idle stream.
#[derive(Debug)]
pub(crate) struct FrameReceiver {
    pub(super) rx: mpsc::Receiver<Bytes>,
    /// What hyper takes leaves the count here.
    pub(super) queued: Arc<Queued>,
}

impl futures_util::Stream for FrameReceiver {
    type Item = BodyFrame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyFrame>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(bytes)) = &polled {
            self.queued.taken(bytes.len());
        }
        polled.map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
    }
}

impl Drop for FrameReceiver {
    /// The client is gone: what it never took leaves the count.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(bytes) = self.rx.try_recv() {
            self.queued.taken(bytes.len());
        }
    }
}

/// The bytes queued between a stream task and its connection, counted on both sides: the
/// stream task adds what it queues, the response body subtracts what hyper takes. The stream
/// task waits on it for room, so that what a stream holds for a client is bounded in bytes
/// however slowly the client reads (hyper itself holds at most its write buffer and one frame
/// more).
#[derive(Debug)]
pub(super) struct Queued {
    bytes: AtomicUsize,
    /// Woken whenever the connection takes bytes (one waiter: the stream task).
    pub(super) taken: Notify,
    /// Every stream's queued bytes together, for `/metrics`.
    gauge: Gauge,
}

impl Queued {
    /// A stream's count, also added to `gauge`.
    pub(super) fn new(gauge: Gauge) -> Queued {
        Queued {
            bytes: AtomicUsize::new(0),
            taken: Notify::new(),
            gauge,
        }
    }

    /// Bytes queued now.
    pub(super) fn get(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// `n` bytes are about to be queued.
    pub(super) fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
        self.gauge.inc_by(n as i64);
    }

    /// `n` bytes left the queue (taken by the connection, or never queued after all).
    pub(super) fn taken(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.gauge.dec_by(n as i64);
        self.taken.notify_one();
    }
}

/// Lets a stream task close its whole connection: a client that accepts nothing for the write
/// timeout is disconnected, rather than left holding a socket whose buffers never drain
/// (ending the body alone would leave hyper waiting to flush it). The connection's driver
/// creates it and waits on [`ConnectionAbort::aborted`]; the router hands it to the stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionAbort(Arc<Notify>);

impl ConnectionAbort {
    /// Closes the connection this request arrived on.
    pub(crate) fn abort(&self) {
        self.0.notify_one();
    }

    /// Resolves once [`ConnectionAbort::abort`] was called (or at once if it already was).
    pub(crate) async fn aborted(&self) {
        self.0.notified().await;
    }
}
