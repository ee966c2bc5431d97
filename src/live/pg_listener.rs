//! The LISTEN connection: one per process, dedicated (not pooled), driven with
//! `Connection::poll_message`, which is the only way tokio-postgres hands out notifications.
//!
//! In plain mode it LISTENs all the time. In bus mode ([`crate::live::bus`]) it first competes
//! for one of the `--pg-listeners` listener seats ([`crate::db::seats`]): while it holds one it
//! LISTENs and republishes every notification to NATS; otherwise it LISTENs only while NATS is
//! down and fallback is on (and stops competing meanwhile). The seat is a lock of this
//! connection's session, so it is freed the moment the connection ends, and another instance
//! takes it at its next try.
//!
//! Before it LISTENs it reads the key that notifications are signed with (see
//! [`crate::live::notice`]) into the hub's key cell, which every source of notifications
//! verifies with.
//!
//! When it drops (PostgreSQL restarted, backend terminated) it reconnects with capped backoff,
//! re-issues LISTEN, and has the hub re-check every watched task, because notifications sent
//! while it was down are gone.

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::db::{self, seats};
use crate::live::bus::Bus;
use crate::live::hub::Hub;
use crate::live::notice::{Notice, NotifyKey};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// `application_name` of the LISTEN connection, so operators (and tests) can tell it apart
/// from the pool's connections in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "taskstream-listen";

/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often an instance without a seat tries to take one: a seat freed by a holder that died is
/// taken again within about this long.
const SEAT_RETRY: Duration = Duration::from_secs(1);

/// How the LISTEN connection is used.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Every instance LISTENs (no `--nats-url`).
    Plain,
    /// Bus mode.
    Bus {
        /// `--pg-listeners`: the seats there are.
        seats: u16,
        /// `--nats-fallback`: LISTEN while NATS is down.
        fallback: bool,
        bus: Bus,
    },
}

impl Mode {
    /// Whether the connection should LISTEN now: always in plain mode, and in bus mode as
    /// [`bus_listens`] says.
    fn listens(&self, holds_seat: bool) -> bool {
        match self {
            Mode::Plain => true,
            Mode::Bus { fallback, bus, .. } => bus_listens(holds_seat, *fallback, *bus.up.borrow()),
        }
    }
}

/// Whether a LISTEN connection in bus mode should LISTEN: while it holds a seat (to republish),
/// or while NATS is down if fallback is on (to deliver by itself).
fn bus_listens(holds_seat: bool, fallback: bool, nats_up: bool) -> bool {
    holds_seat || (fallback && !nats_up)
}

/// The sender of the first "LISTEN connection ready" (or of the error that prevented it).
type Ready = Option<oneshot::Sender<Result<(), tokio_postgres::Error>>>;

/// Keeps a LISTEN connection up until `shutdown`, feeding the hub. `ready` is sent once the
/// connection is established and, if it should LISTEN, LISTENs (or the first attempt failed,
/// with the error).
pub(crate) async fn run(
    mut config: tokio_postgres::Config,
    mode: Mode,
    hub: Hub,
    metrics: Arc<Metrics>,
    ready: oneshot::Sender<Result<(), tokio_postgres::Error>>,
    mut shutdown: Shutdown,
) {
    config.application_name(APPLICATION_NAME);
    if matches!(mode, Mode::Bus { .. }) {
        let options = [config.get_options(), Some(seats::SEAT_KEEPALIVES)];
        let options: Vec<&str> = options.into_iter().flatten().collect();
        config.options(options.join(" "));
    }
    let mut ready = Some(ready);
    let mut backoff = MIN_BACKOFF;
    let mut connected_before = false;
    let session = Session {
        mode,
        hub: &hub,
        metrics: &metrics,
    };
    loop {
        let ended = tokio::select! {
            ended = session.run(&config, &mut ready, connected_before) => ended,
            _ = shutdown.wait() => return,
        };
        metrics.bus.pg_listener.set(0);
        metrics.bus.pg_listener_seat.set(0);
        match ended {
            Ok(()) => {
                // It was up, so the next attempt starts from the shortest wait.
                backoff = MIN_BACKOFF;
                connected_before = true;
                tracing::warn!("LISTEN connection closed; reconnecting");
            }
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    // The caller decides whether a failed start is fatal; keep trying anyway.
                    continue;
                }
                tracing::warn!(%error, ?backoff, "LISTEN connection failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What each connection's life needs; it outlives connections.
struct Session<'a> {
    mode: Mode,
    /// Where notifications go, and who re-checks every task after a gap in listening.
    hub: &'a Hub,
    metrics: &'a Metrics,
}

impl Session<'_> {
    /// One connection's life: connect, then route notifications while [`Session::steer`]
    /// decides about the seat and the LISTEN, until it ends. `Ok` means it was established and
    /// later lost; `Err` that it could not be established.
    async fn run(
        &self,
        config: &tokio_postgres::Config,
        ready: &mut Ready,
        reconnect: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        // Set while this connection holds a seat: what arrives is republished to NATS.
        let publishing = AtomicBool::new(false);
        let (hub, metrics) = (self.hub, self.metrics);
        let publisher = match &self.mode {
            Mode::Bus { bus, .. } => Some(&bus.publisher),
            Mode::Plain => None,
        };
        let drive = async {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        metrics.notifications.inc();
                        let (channel, payload) = (notification.channel(), notification.payload());
                        let notice = hub.keys().parse(channel, payload, Instant::now());
                        if !matches!(notice, Notice::Forged)
                            && let Some(publisher) = publisher
                            && publishing.load(Ordering::Relaxed)
                        {
                            // Only what verified goes on: a holder never relays a forgery.
                            publisher.offer(channel, notice.task(), payload);
                        }
                        hub.notify(notice);
                    }
                    Some(Ok(_)) => {} // notices
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                }
            }
        };
        let mut established = false;
        let steer = self.steer(&client, &publishing, ready, reconnect, &mut established);
        let ended = tokio::select! {
            ended = drive => ended,
            failed = steer => failed.map(|never| match never {}),
        };
        drop(client);
        match ended {
            Err(error) if !established => Err(error),
            Err(error) => {
                tracing::warn!(%error, "LISTEN connection lost");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Takes a seat when there is one to take, LISTENs or UNLISTENs as [`Mode::listens`] says,
    /// and waits for what may change that: a seat to try for again, NATS going down or up.
    /// Returns only when a statement fails (the connection is going away). `established` is set
    /// once the connection is in the state it should be in.
    async fn steer(
        &self,
        client: &Client,
        publishing: &AtomicBool,
        ready: &mut Ready,
        reconnect: bool,
        established: &mut bool,
    ) -> Result<Infallible, tokio_postgres::Error> {
        let (mode, hub, metrics) = (&self.mode, self.hub, self.metrics);
        // The key is read before any LISTEN, so before the first notification can arrive.
        let settings = db::read_notify_settings(client).await?;
        hub.keys().set(NotifyKey::new(&settings.key));
        if !reconnect {
            tracing::info!(
                payload = settings.payload.map_or("unknown", |mode| mode.as_str()),
                "notifications: authenticated, payload mode read from the database"
            );
        }
        let mut nats_up = match mode {
            Mode::Bus { bus, .. } => Some(bus.up.clone()),
            Mode::Plain => None,
        };
        let mut seat = None;
        let mut listening = false;
        loop {
            // Not while listening in fallback: a LISTEN connection runs nothing after its LISTEN,
            // so that `pg_stat_activity` shows truly which backends listen.
            if let Mode::Bus { seats: count, .. } = mode
                && seat.is_none()
                && !listening
            {
                seat = seats::take_seat(client, *count).await?;
                if let Some(seat) = seat {
                    tracing::info!(
                        seat,
                        "holding a PostgreSQL listener seat: LISTEN and publish"
                    );
                    metrics.bus.pg_listener_seat.set(1);
                    publishing.store(true, Ordering::Relaxed);
                }
            }
            let listen = mode.listens(seat.is_some());
            if listen != listening {
                let statement = if listen {
                    db::listen_statement()
                } else {
                    db::UNLISTEN_STATEMENT.to_owned()
                };
                client.batch_execute(&statement).await?;
                listening = listen;
                metrics.bus.pg_listener.set(i64::from(listen));
                if listen {
                    // Whatever was notified while no LISTEN was in place is lost: re-check
                    // everything.
                    hub.poll_now();
                }
            }
            if !*established {
                *established = true;
                if reconnect {
                    metrics.listen_reconnects.inc();
                }
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                tracing::debug!("LISTEN connection established");
            }
            match &mut nats_up {
                None => return std::future::pending().await,
                Some(nats_up) => wait_for_change(seat.is_none() && !listening, nats_up).await,
            }
        }
    }
}

/// Waits for a reason to steer again: the next seat try (when `contending`), or NATS going
/// down or up.
async fn wait_for_change(contending: bool, nats_up: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(SEAT_RETRY), if contending => {}
        changed = nats_up.changed() => {
            if changed.is_err() {
                // The bus is gone, which happens only when the server stops.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_bus_mode_seat_holders_listen_and_others_only_in_fallback() {
        for nats_up in [true, false] {
            for fallback in [true, false] {
                assert!(
                    bus_listens(true, fallback, nats_up),
                    "a holder always listens"
                );
            }
        }
        assert!(!bus_listens(false, true, true), "NATS up: the bus delivers");
        assert!(
            bus_listens(false, true, false),
            "NATS down: fall back to LISTEN"
        );
        assert!(
            !bus_listens(false, false, false),
            "--nats-fallback false: the poll"
        );
    }
}
