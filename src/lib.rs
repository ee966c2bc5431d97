//! taskstream: streams live AI-agent events from PostgreSQL as Server-Sent Events.
//!
//! # Layout
//! From the bottom up; each layer knows nothing of the ones above it.
//! - [`wire`]: the bytes on the wire, pure: [`wire::sse`] writes frames, [`wire::event`] turns a
//!   stored row into an event, [`wire::cursor`] is the resume position in each event's id
//!   ([`wire::multi_cursor`] for a stream of several tasks).
//! - [`db`]: storage: the pool and every SQL statement; the schema is `schema.sql`.
//! - `live`: live delivery, knowing nothing of HTTP: the hub of shared tails, one tail per
//!   watched task, the PostgreSQL LISTEN connection ([`live::pg_listener`]), what a
//!   notification says, and bus mode (fan-out over NATS, [`live::bus`]).
//! - `client_stream`: one client's stream task (replay, then live frames, then `complete`) and
//!   the decisions it takes; a stream of several tasks over one connection (one lane per task,
//!   on the same shared tails); the live task list.
//! - [`http`]: the accept loop and connections, the router (the one `match` over method and
//!   path), requests and responses, authentication, CORS and TLS; [`viewer`]: the pages;
//!   `api`: the JSON API (writes, reads without a stream).
//! - `app`: the state every request and stream shares; [`instance`]: [`start`] wires a server
//!   together and [`Handle`] stops it.
//! - [`config`]: every tunable, its default and why; [`metrics`]: counters, also at `/metrics`;
//!   [`logging`]: the binary's log lines; [`shutdown`]: the shutdown signal; [`process`]: the
//!   open files limit.
//! - [`embedded_pg`]: a private PostgreSQL cluster for `cargo run`, tests and the benchmark;
//!   [`embedded_nats`]: a private NATS server for the bus-mode tests and the benchmark; both
//!   tied to this process by a `watchdog`. [`demo`]: the demo agent that writes events.

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub(crate) mod api;
pub(crate) mod app;
pub(crate) mod client_stream;
pub mod config;
pub mod db;
pub mod demo;
pub mod embedded_nats;
pub mod embedded_pg;
pub mod http;
pub mod instance;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod shutdown;
pub mod viewer;
pub(crate) mod watchdog;
pub mod wire;

pub use crate::config::Config;
pub use crate::instance::{Handle, StartError, start};
pub use crate::process::raise_open_files_limit;
