//! A server under test: started on 127.0.0.1:0 with short intervals, on its own database, with
//! a writer connection beside it, and restarted the way a deploy restarts it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use taskstream::{Config, Handle};
use tokio_postgres::Client;

use crate::cluster::{connect, fresh_database};
use crate::http::Response;
use crate::ledger::{assert_ledger, numbered};
use crate::wait::WAIT;
use crate::writer::{insert_event, insert_task, set_status};

/// Longest [`TestServer::restart`] lets a server take to stop: give a server that restarts a
/// drain deadline well under this (its streams close spread over the first half of it).
pub const PROMPT_STOP: Duration = Duration::from_secs(5);

/// A configuration with short intervals, so tests wait for conditions, not for defaults.
pub fn fast_config() -> Config {
    Config {
        poll_interval: Duration::from_millis(200),
        keepalive: Duration::from_millis(300),
        ..Config::default()
    }
}

/// A running server, its database, and an agent-like writer connection to that database.
pub struct TestServer {
    /// The running server.
    pub handle: Handle,
    /// Its database.
    pub url: String,
    /// A connection that writes like an agent does.
    pub db: Client,
}

impl TestServer {
    /// Starts a server with `config` on a fresh database.
    pub async fn start(config: Config) -> TestServer {
        let url = fresh_database().await;
        Self::start_on(config, url).await
    }

    /// Starts a server with `config` on an existing database.
    pub async fn start_on(config: Config, url: String) -> TestServer {
        let handle = taskstream::start(config, &url, "127.0.0.1:0".parse().expect("address"))
            .await
            .unwrap_or_else(|e| panic!("start server: {e}"));
        let db = connect(&url).await;
        TestServer { handle, url, db }
    }

    /// Shuts this server down as a deploy does (its open streams end and their clients
    /// reconnect) and starts a new one with `config` on the same address and database. Fails
    /// if the old one takes longer than [`PROMPT_STOP`] to stop: open streams must end by
    /// themselves on shutdown.
    pub async fn restart(self, config: Config) -> TestServer {
        let addr = self.addr();
        self.handle.shutdown();
        let started = Instant::now();
        tokio::time::timeout(WAIT, self.handle.stopped())
            .await
            .expect("the server stops");
        let took = started.elapsed();
        assert!(took < PROMPT_STOP, "the server took {took:?} to stop");
        let handle = taskstream::start(config, &self.url, addr)
            .await
            .unwrap_or_else(|e| panic!("restart the server on {addr}: {e}"));
        TestServer {
            handle,
            url: self.url,
            db: self.db,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Creates a task with `status`.
    pub async fn task(&self, id: &str, status: &str) {
        insert_task(&self.db, id, status).await;
    }

    /// Inserts an event as an agent does; returns its seq.
    pub async fn event(&self, task: &str, session: &str, event_type: &str, content: &str) -> i64 {
        insert_event(&self.db, task, session, event_type, content).await
    }

    /// Inserts `n` assistant events `prefix 0` … `prefix n-1`.
    pub async fn events(&self, task: &str, session: &str, prefix: &str, n: usize) {
        for i in 0..n {
            self.event(task, session, "assistant", &format!("{prefix} {i}"))
                .await;
        }
    }

    /// Sets a task's status.
    pub async fn status(&self, task: &str, status: &str) {
        set_status(&self.db, task, status).await;
    }

    /// Opens the event stream of `task`, with no cursor and no other request header.
    pub async fn stream(&self, task: &str) -> Response {
        Response::get(self.addr(), &format!("/tasks/{task}/events/stream"), &[]).await
    }
}

/// Task `t` with five stored events `e 0` … `e 4`: a client reads them on `from`, is cut off
/// while `e 5` … `e 9` are written, and resumes on `to` with its cursor. Asserts that it gets
/// exactly what it missed, and returns its stream there.
pub async fn resume_elsewhere(from: &TestServer, to: SocketAddr) -> Response {
    from.task("t", "InProgress").await;
    from.events("t", "s1", "e", 5).await;
    let mut on_from = from.stream("t").await;
    assert_ledger(
        &on_from.take(5).await,
        &numbered("e", 0..5),
        "before the cut",
    );
    let cursor = on_from.last_id().expect("cursor");
    drop(on_from); // cut off
    for i in 5..10 {
        from.event("t", "s1", "assistant", &format!("e {i}")).await;
    }
    let mut resumed =
        Response::get(to, "/tasks/t/events/stream", &[("last-event-id", &cursor)]).await;
    assert_ledger(&resumed.take(5).await, &numbered("e", 5..10), "resumed");
    resumed
}
