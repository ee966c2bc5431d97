//! What an HTTP/2 connection is doing: how many of its requests are open (being answered, or
//! streaming their response), so that a connection with none for the idle timeout is closed.
//! HTTP/2 keep-alive pings do not count: a client that answers pings but opens no stream still
//! holds a socket and its buffers for nothing. (An idle HTTP/1 connection is closed by hyper's
//! header timeout while it waits for its next request.)

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// The open requests of one connection. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    open: AtomicUsize,
    /// Woken whenever `open` changes.
    changed: Notify,
}

/// One open request; dropping it (the response body is done or reset) closes it.
#[derive(Debug)]
pub(crate) struct Active(Activity);

impl Activity {
    /// A request starts.
    pub(crate) fn enter(&self) -> Active {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
        Active(self.clone())
    }

    /// Resolves once no request has been open for `timeout`.
    pub(crate) async fn idle_for(self, timeout: Duration) {
        loop {
            let mut changed = pin!(self.0.changed.notified());
            changed.as_mut().enable();
            if self.0.open.load(Ordering::Acquire) > 0 {
                changed.await;
            } else if tokio::time::timeout(timeout, changed).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request open until it is done (or dropped).
pub(crate) struct Tracked<B> {
    body: B,
    _active: Active,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, active: Active) -> Tracked<B> {
        Tracked {
            body,
            _active: active,
        }
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_a_whole_timeout_without_an_open_request() {
        const TIMEOUT: Duration = Duration::from_secs(60);
        let activity = Activity::default();
        let request = activity.enter();
        let mut idle = Box::pin(activity.clone().idle_for(TIMEOUT));
        assert!(
            tokio::time::timeout(TIMEOUT * 3, idle.as_mut())
                .await
                .is_err(),
            "not idle while a request is open"
        );
        drop(request);
        tokio::time::advance(TIMEOUT / 2).await;
        let again = activity.enter(); // restarts the clock once it ends
        drop(again);
        let started = tokio::time::Instant::now();
        idle.await;
        assert_eq!(started.elapsed(), TIMEOUT);
    }
}
