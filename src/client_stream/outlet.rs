//! The sending side of one response body, with the client's pace rules: keep-alives during
//! silence, a bound on the bytes queued for the client, a write timeout for a client that
//! accepts nothing, and the server's reasons to end a stream (shutdown, token expiry, maximum
//! lifetime).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep, timeout};

use super::body::Queued;
use crate::live::tail::Live;
use crate::metrics::EndReason;
use crate::shutdown::Shutdown;
use crate::wire::sse;

/// Resolves when the stream must end for a reason of the server's.
pub(super) type Ending = Pin<Box<dyn Future<Output = EndReason> + Send>>;

/// See the module's documentation.
pub(super) struct Outlet {
    tx: mpsc::Sender<Bytes>,
    /// Bytes in `tx` that the connection has not taken yet.
    queued: Arc<Queued>,
    /// Most bytes queued at once (one larger chunk may go alone into an empty queue).
    max_queued: usize,
    /// Silence after which a keep-alive comment is sent.
    keepalive_every: Duration,
    /// Longest a client may accept nothing before it is disconnected.
    write_timeout: Duration,
    /// Fires a keep-alive interval after it was last armed; when it fires, `last_sent` says
    /// whether the stream has really been silent that long (re-arming a timer on every frame
    /// would cost a timer-wheel update per frame per client).
    keepalive: Pin<Box<Sleep>>,
    /// When bytes were last handed to the client.
    last_sent: Instant,
    ending: Ending,
}

/// Where the bytes of an [`Outlet`] go, and how many may wait there.
pub(super) struct Queue {
    pub(super) tx: mpsc::Sender<Bytes>,
    pub(super) queued: Arc<Queued>,
    pub(super) max_queued: usize,
}

impl Outlet {
    pub(super) fn new(
        queue: Queue,
        keepalive_every: Duration,
        write_timeout: Duration,
        ending: Ending,
    ) -> Outlet {
        Outlet {
            tx: queue.tx,
            queued: queue.queued,
            max_queued: queue.max_queued,
            keepalive_every,
            write_timeout,
            keepalive: Box::pin(tokio::time::sleep(keepalive_every)),
            last_sent: Instant::now(),
            ending,
        }
    }

    /// Hands bytes to the client's buffer. Waits while the buffer is full (in chunks or in
    /// bytes) as long as the client keeps taking something; one that takes nothing for the
    /// write timeout is slow. The keep-alive timer restarts after every send.
    pub(super) async fn send(&mut self, bytes: Bytes) -> Result<(), EndReason> {
        let len = bytes.len();
        let max = self.max_queued;
        let room = move |queued: usize| queued == 0 || queued + len <= max;
        if !room(self.queued.get()) {
            // Boxed, like the full channel below: a stream waits for room rarely, and an
            // unboxed wait (a timer and a notification) would stay in every idle stream's
            // future, whose size is the memory each open stream holds.
            Box::pin(self.wait_until(room)).await?;
        }
        self.queued.add(len);
        let result = match self.tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EndReason::ClientGone),
            Err(mpsc::error::TrySendError::Full(frame)) => {
                Box::pin(self.send_when_room(frame)).await
            }
        };
        match result {
            Ok(()) => self.last_sent = Instant::now(),
            Err(_) => self.queued.taken(len),
        }
        result
    }

    /// Sends into a full channel: waits for a slot as long as the write timeout allows.
    async fn send_when_room(&mut self, frame: Bytes) -> Result<(), EndReason> {
        tokio::select! {
            sent = timeout(self.write_timeout, self.tx.send(frame)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(EndReason::ClientGone),
                Err(_) => Err(EndReason::Slow),
            },
            reason = &mut self.ending => Err(reason),
        }
    }

    /// Waits until the client has taken everything queued for it: a stream reads its next
    /// rows only then, so that the rows it holds and the frames queued for the client stay
    /// within one budget together.
    pub(super) async fn drained(&mut self) -> Result<(), EndReason> {
        let empty = |queued: usize| queued == 0;
        if empty(self.queued.get()) {
            return Ok(());
        }
        Box::pin(self.wait_until(empty)).await
    }

    /// Waits until `ready` holds for the bytes queued, as long as the client takes something
    /// at least every write timeout.
    async fn wait_until(&mut self, ready: impl Fn(usize) -> bool) -> Result<(), EndReason> {
        loop {
            // `taken` keeps a permit when nobody waits, so a take between this check and the
            // wait below is not missed.
            if ready(self.queued.get()) {
                return Ok(());
            }
            tokio::select! {
                taken = timeout(self.write_timeout, self.queued.taken.notified()) => {
                    if taken.is_err() {
                        return Err(EndReason::Slow);
                    }
                }
                reason = &mut self.ending => return Err(reason),
            }
        }
    }

    /// Waits for the tail's next message, sending keep-alives while the stream is silent. Ends
    /// the stream when the server says so or when the client is `gone` (the response body was
    /// dropped: hyper saw the connection close).
    pub(super) async fn next_live<G>(
        &mut self,
        live: &mut broadcast::Receiver<Live>,
        gone: Pin<&mut G>,
    ) -> Result<Result<Live, RecvError>, EndReason>
    where
        G: Future<Output = ()>,
    {
        self.next(live.recv(), gone).await
    }

    /// Waits for `next`, with the same keep-alives and ends as [`Outlet::next_live`] (a
    /// multi-task stream waits on the next message of any of its tails).
    pub(super) async fn next<T, G>(
        &mut self,
        next: impl Future<Output = T>,
        mut gone: Pin<&mut G>,
    ) -> Result<T, EndReason>
    where
        G: Future<Output = ()>,
    {
        let mut next = std::pin::pin!(next);
        loop {
            tokio::select! {
                biased;
                reason = &mut self.ending => return Err(reason),
                received = &mut next => return Ok(received),
                () = &mut self.keepalive => self.keep_alive().await?,
                () = gone.as_mut() => return Err(EndReason::ClientGone),
            }
        }
    }

    /// A clone of the sender, whose `closed()` resolves when the client is gone.
    pub(super) fn watcher(&self) -> mpsc::Sender<Bytes> {
        self.tx.clone()
    }

    /// The keep-alive timer fired: send a comment if nothing was sent for a whole interval,
    /// and re-arm the timer for an interval after the last send.
    async fn keep_alive(&mut self) -> Result<(), EndReason> {
        if Instant::now() >= self.last_sent + self.keepalive_every {
            // Boxed: this wait sits inside every idle stream's future.
            Box::pin(self.send(Bytes::from_static(sse::KEEP_ALIVE))).await?;
        }
        let next = self.last_sent + self.keepalive_every;
        self.keepalive.as_mut().reset(next);
        Ok(())
    }
}

/// The stream's [`Ending`]: the first of shutdown (plus a random share of `spread`, so that
/// thousands of clients do not reconnect to the remaining instances in one burst), token
/// expiry, and the maximum lifetime (minus up to 10 % jitter, so that streams opened together
/// do not all end together).
pub(super) fn ending(
    mut shutdown: Shutdown,
    spread: Duration,
    token_expires: Option<SystemTime>,
    lifetime: Option<Duration>,
) -> Ending {
    let spread = jitter(spread);
    let expiry = token_expires.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    let lifetime = lifetime.map(|lifetime| lifetime - jitter(lifetime / 10));
    // One timer for the earlier of the two: every open stream holds this future, so each
    // timer in it is memory per stream.
    let deadline = [
        (expiry, EndReason::TokenExpired),
        (lifetime, EndReason::Lifetime),
    ]
    .into_iter()
    .filter_map(|(delay, reason)| Some((delay?, reason)))
    .min_by_key(|(delay, _)| *delay);
    Box::pin(async move {
        let deadline = async {
            match deadline {
                Some((delay, reason)) => {
                    tokio::time::sleep(delay).await;
                    reason
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.wait() => {}
            reason = deadline => return reason,
        }
        tokio::time::sleep(spread).await;
        EndReason::Shutdown
    })
}

/// A uniformly random duration in `[0, max)` (std's per-instance random hash keys are enough
/// randomness to spread reconnects).
fn jitter(max: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    max.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use futures_util::StreamExt;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;
    use crate::client_stream::body::FrameReceiver;
    use crate::shutdown;

    const KEEPALIVE: Duration = Duration::from_secs(15);
    const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// An outlet whose queue holds `buffer` chunks (and bytes enough), and its body.
    fn outlet(buffer: usize, ending: Ending) -> (Outlet, FrameReceiver) {
        bounded(buffer, 1 << 20, ending)
    }

    /// An outlet whose queue holds `buffer` chunks and `max_queued` bytes, and its body.
    fn bounded(buffer: usize, max_queued: usize, ending: Ending) -> (Outlet, FrameReceiver) {
        let (tx, rx) = mpsc::channel(buffer);
        let queued = Arc::new(Queued::new(Gauge::default()));
        let queue = Queue {
            tx,
            queued: queued.clone(),
            max_queued,
        };
        let outlet = Outlet::new(queue, KEEPALIVE, WRITE_TIMEOUT, ending);
        (outlet, FrameReceiver { rx, queued })
    }

    fn never() -> Ending {
        Box::pin(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_fill_silence_only() {
        let (mut out, mut rx) = outlet(8, never());
        let (tx_live, mut live) = broadcast::channel::<Live>(4);
        let gone = pin!(std::future::pending::<()>());
        let mut gone = gone;
        let waiting = tokio::time::timeout(
            KEEPALIVE * 2 + Duration::from_millis(1),
            out.next_live(&mut live, gone.as_mut()),
        );
        assert!(waiting.await.is_err(), "nothing but silence");
        assert_eq!(rx.rx.try_recv().as_deref(), Ok(sse::KEEP_ALIVE));
        assert_eq!(rx.rx.try_recv().as_deref(), Ok(sse::KEEP_ALIVE));
        assert!(rx.rx.try_recv().is_err(), "one comment per interval");

        // A real send restarts the interval: no comment until a whole interval after it.
        tokio::time::advance(KEEPALIVE / 2).await;
        out.send(Bytes::from_static(b"data\n\n"))
            .await
            .expect("sent");
        assert_eq!(rx.rx.try_recv().as_deref(), Ok(&b"data\n\n"[..]));
        let waiting = tokio::time::timeout(KEEPALIVE - Duration::from_millis(1), async {
            out.next_live(&mut live, gone.as_mut()).await
        });
        assert!(waiting.await.is_err());
        assert!(
            rx.rx.try_recv().is_err(),
            "silence is measured from the last send"
        );
        drop(tx_live);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_accepts_nothing_is_slow_after_the_write_timeout() {
        let (mut out, _rx) = outlet(1, never());
        out.send(Bytes::from_static(b"a")).await.expect("fits");
        let started = Instant::now();
        assert_eq!(
            out.send(Bytes::from_static(b"b")).await,
            Err(EndReason::Slow)
        );
        assert_eq!(started.elapsed(), WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_holds_a_bounded_number_of_bytes() {
        let (mut out, mut body) = bounded(64, 10, never());
        out.send(Bytes::from_static(b"12345678"))
            .await
            .expect("fits");
        let mut second = Box::pin(out.send(Bytes::from_static(b"abcdefgh")));
        assert!(
            tokio::time::timeout(WRITE_TIMEOUT / 2, second.as_mut())
                .await
                .is_err(),
            "8 + 8 bytes exceed 10: the second chunk waits"
        );
        let first = body.next().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"12345678"[..]));
        second.await.expect("room once the first was taken");
        assert_eq!(body.queued.get(), 8);
        // A chunk larger than the whole budget goes alone into an empty queue.
        let big = Bytes::from(vec![b'x'; 100]);
        let mut third = Box::pin(out.send(big));
        assert!(
            tokio::time::timeout(WRITE_TIMEOUT / 2, third.as_mut())
                .await
                .is_err()
        );
        body.next().await.expect("the second chunk").expect("data");
        third.await.expect("alone in the queue");
        assert_eq!(body.queued.get(), 100);
        drop(body);
        assert_eq!(
            out.queued.get(),
            0,
            "a body dropped unread leaves nothing counted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_nothing_while_the_queue_is_full_in_bytes_is_slow() {
        let (mut out, _body) = bounded(64, 10, never());
        out.send(Bytes::from_static(b"12345678"))
            .await
            .expect("fits");
        let started = Instant::now();
        assert_eq!(out.drained().await, Err(EndReason::Slow));
        assert_eq!(started.elapsed(), WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_body_means_the_client_is_gone() {
        let (mut out, rx) = outlet(1, never());
        drop(rx);
        assert_eq!(
            out.send(Bytes::from_static(b"a")).await,
            Err(EndReason::ClientGone)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_ends_a_stream_even_while_it_waits_on_a_full_buffer() {
        let (trigger, shutdown) = shutdown::channel();
        let (mut out, _rx) = outlet(1, ending(shutdown, Duration::ZERO, None, None));
        out.send(Bytes::from_static(b"a")).await.expect("fits");
        trigger.trigger();
        assert_eq!(
            out.send(Bytes::from_static(b"b")).await,
            Err(EndReason::Shutdown)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn token_expiry_and_lifetime_end_a_stream() {
        let (_trigger, shutdown) = shutdown::channel();
        let expires = SystemTime::now() + Duration::from_secs(60);
        let started = Instant::now();
        assert_eq!(
            ending(shutdown.clone(), Duration::ZERO, Some(expires), None).await,
            EndReason::TokenExpired
        );
        assert!(started.elapsed() <= Duration::from_secs(60));
        let lifetime = Duration::from_secs(100);
        let started = Instant::now();
        assert_eq!(
            ending(shutdown, Duration::ZERO, None, Some(lifetime)).await,
            EndReason::Lifetime
        );
        let took = started.elapsed();
        assert!(took <= lifetime && took >= lifetime * 9 / 10, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_of_token_expiry_and_lifetime_ends_a_stream() {
        let (_trigger, shutdown) = shutdown::channel();
        let soon = SystemTime::now() + Duration::from_secs(30);
        let late = SystemTime::now() + Duration::from_secs(3600);
        let lifetime = Duration::from_secs(100);
        assert_eq!(
            ending(shutdown.clone(), Duration::ZERO, Some(soon), Some(lifetime)).await,
            EndReason::TokenExpired
        );
        assert_eq!(
            ending(shutdown, Duration::ZERO, Some(late), Some(lifetime)).await,
            EndReason::Lifetime
        );
    }
}
