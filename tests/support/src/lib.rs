//! The harness of taskstream's integration tests: one private PostgreSQL cluster per test
//! binary, a fresh database per test, a server on 127.0.0.1:0, a writer connection that acts
//! like an agent, and clients that read the stream the way a browser does.
//!
//! Tests never use `DATABASE_URL`. The cluster is stopped and removed when the test process
//! exits, however it exits (see `taskstream::embedded_pg`).
//!
//! # Layout
//! - [`cluster`]: the private PostgreSQL, fresh databases and connections to them.
//! - [`writer`]: what an agent writes (tasks, events, statuses), and a writer that holds a lock.
//! - [`server`]: [`server::TestServer`], a server on its own database, and the fast
//!   configuration tests start it with; [`auth`]: the tests' JWT secret and tokens.
//! - [`roles`]: login roles with taskstream's group roles, as an operator creates them;
//!   [`listener`]: a LISTEN connection that hears every payload, as any login's can.
//! - [`http`]: [`http::Response`], one request over a new connection, its body read whole or as
//!   an event stream.
//! - [`raw_client`]: [`raw_client::RawClient`], a bare socket that reads only when asked, for
//!   clients that stop reading.
//! - [`sse_parser`]: the WHATWG event-stream parser both clients read with.
//! - [`ledger`]: what a client must receive and what it did: `follow`, `committed`,
//!   `assert_exact`, `assert_ledger`.
//! - [`metrics`]: `GET /metrics` parsed.
//! - [`nats`]: bus mode: a private NATS server, the bus configuration, and what PostgreSQL and
//!   NATS show of listeners and subscriptions.
//! - [`wait`]: how long a test waits, and waiting for a condition.
//! - [`load`]: the size of the load tests.
//! - [`e2e`]: programs as child processes: Chromium, Node and Python clients this project did
//!   not write, and Node scripts of `tests/e2e`.
//! - [`js_client`]: clients of the project's `taskstream.js` in Node or Chromium, and their logs.
//! - [`child`]: the `taskstream` binary itself as a child process.
//! - [`pg_proxy`]: a proxy in front of the cluster that freezes, or refuses startup options
//!   as PgBouncer does; [`tls`]: a self-signed certificate and a client that trusts it.

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub mod auth;
pub mod child;
pub mod cluster;
pub mod e2e;
pub mod http;
pub mod js_client;
pub mod ledger;
pub mod listener;
pub mod load;
pub mod metrics;
pub mod nats;
pub mod pg_proxy;
pub mod raw_client;
pub mod roles;
pub mod server;
pub mod sse_parser;
pub mod tls;
pub mod wait;
pub mod writer;
