//! Live delivery, knowing nothing of HTTP: the hub of shared tails ([`hub`]), what one tail does
//! ([`tail`]), the PostgreSQL LISTEN connection that feeds them ([`pg_listener`]), what a
//! notification says once its MAC is verified ([`notice`]), how often one that names nothing
//! may wake the poll ([`poll_gate`]), and bus mode, which fans notifications out over NATS
//! ([`bus`]) to the tasks each instance watches ([`interest`]); the live task list's source
//! ([`task_feed`]).

pub mod bus;
pub(crate) mod hub;
pub(crate) mod interest;
pub(crate) mod notice;
pub mod pg_listener;
pub(crate) mod poll_gate;
pub(crate) mod tail;
pub(crate) mod task_feed;
