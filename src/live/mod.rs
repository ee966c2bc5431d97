//! Live delivery, knowing nothing of HTTP: the hub of shared tails ([`hub`]), what one tail does
//! ([`tail`]), and the PostgreSQL LISTEN connection that feeds them ([`pg_listener`]).

pub mod hub;
pub mod pg_listener;
pub mod tail;
