//! The listener seats of bus mode: PostgreSQL session advisory locks, taken on the LISTEN
//! connection itself, so that a seat is freed the moment that connection ends (the process died,
//! its backend was terminated, the network dropped), with no service of our own to elect anyone.

use tokio_postgres::Client;

/// Advisory-lock class of the seats: an arbitrary constant ("taskstream listener seats"). The
/// two-key form, so it never collides with the schema's one-key lock.
pub const SEAT_LOCK_CLASS: i32 = 7_415_338;

/// Server-side TCP keepalives of a LISTEN connection in bus mode: PostgreSQL notices a holder
/// that vanished without closing its connection (a network partition, a powered-off host) after
/// about 5 s and frees its seat. A process that dies, even by SIGKILL, closes it at once.
pub(crate) const SEAT_KEEPALIVES: &str =
    "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3";

/// Tries seats `0..seats` in turn on `client`'s session and returns the first one it now holds,
/// or `None` when every seat is held by another session. One statement per seat, never one
/// that locks in a `WHERE` with a `LIMIT` (PostgreSQL may evaluate it for more rows).
pub(crate) async fn take_seat(
    client: &Client,
    seats: u16,
) -> Result<Option<u16>, tokio_postgres::Error> {
    for seat in 0..seats {
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&SEAT_LOCK_CLASS, &i32::from(seat)],
            )
            .await?
            .get(0);
        if taken {
            return Ok(Some(seat));
        }
    }
    Ok(None)
}
