//! Live delivery, knowing nothing of HTTP: the hub of shared tails ([`hub`]), what one tail does
//! ([`tail`]), the PostgreSQL LISTEN connection that feeds them ([`pg_listener`]), and what a
//! notification says ([`notice`]).

pub(crate) mod hub;
pub(crate) mod notice;
pub mod pg_listener;
pub(crate) mod tail;
