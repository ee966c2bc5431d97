//! The receiving side of a stream: the response body that hyper polls, and the handle that
//! lets a stream close its whole connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::sync::{Notify, mpsc};

/// What the response body yields.
pub(crate) type BodyFrame = Result<Frame<Bytes>, Infallible>;

/// The response body of a stream: whatever its stream task sends, until it drops the sender.
pub(crate) type EventBody = StreamBody<FrameReceiver>;

/// The receiving half of a stream's channel, as the `Stream` that [`StreamBody`] wants. The
/// channel carries bare `Bytes` (32 bytes a slot) and they become frames here: a channel of
/// `Frame`s would cost three times the memory per idle stream.
#[derive(Debug)]
pub(crate) struct FrameReceiver(pub(super) mpsc::Receiver<Bytes>);

impl futures_util::Stream for FrameReceiver {
    type Item = BodyFrame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyFrame>> {
        self.0
            .poll_recv(cx)
            .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
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
