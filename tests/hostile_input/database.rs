//! A database behind a pooler that refuses startup options (as PgBouncer does), and one that
//! stops answering without closing its connections: every query has a client-side deadline,
//! so requests get `503` in seconds and the pool recovers by itself.

use std::time::Duration;

use futures_util::future::join_all;
use support::cluster::fresh_database;
use support::http::Response;
use support::ledger::{contents, numbered};
use support::pg_proxy::PgProxy;
use support::server::{TestServer, fast_config};
use support::wait::WAIT;
use taskstream::Config;

/// Behind a pooler that refuses the `options` startup parameter (PgBouncer's default), the
/// server connects without it (once refused, it stops asking) and serves streams.
#[tokio::test]
async fn a_pooler_that_refuses_startup_options_is_served() {
    let proxy = PgProxy::start(true).await;
    let url = proxy.url(&fresh_database().await);
    let server = TestServer::start_on(fast_config(), url).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 3).await;
    for _ in 0..3 {
        let mut sse = server.stream("t").await;
        assert_eq!(contents(&sse.take(3).await), numbered("e", 0..3));
    }
    assert_eq!(proxy.refused(), 1, "asked once, then never again");
}

/// A database that stops answering but keeps its connections open (a frozen host): each query
/// gives up at its deadline, slightly above `statement_timeout`, so requests get `503` in
/// seconds instead of hanging for as long as TCP takes to notice (many minutes), the
/// connections are dropped, and once the database answers again the pool serves at once. This
/// is behind a PgBouncer-like proxy, where no `statement_timeout` could be set at all.
#[tokio::test]
async fn a_database_that_stops_answering_frees_the_pool_in_seconds() {
    let proxy = PgProxy::start(true).await;
    let url = proxy.url(&fresh_database().await);
    let server = TestServer::start_on(
        Config {
            statement_timeout: Duration::from_millis(500),
            pool_size: 4,
            max_replays: 2,
            max_writes: 1,
            notify: false,
            ..fast_config()
        },
        url,
    )
    .await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 2).await;
    let mut sse = server.stream("t").await;
    assert_eq!(contents(&sse.take(2).await), numbered("e", 0..2));

    proxy.freeze();
    let addr = server.addr();
    let answers = join_all((0..3).map(|_| async move {
        let response = Response::try_request("GET", addr, "/tasks/t/events/stream", &[]).await;
        response
            .expect("an answer before the client gives up")
            .status
    }))
    .await;
    for status in answers {
        assert_eq!(status, 503);
    }
    let ready = tokio::time::timeout(WAIT, Response::get(addr, "/readyz", &[]))
        .await
        .expect("readyz answers");
    assert_eq!(ready.status, 503);

    proxy.thaw();
    let mut again = server.stream("t").await;
    assert_eq!(again.status, 200);
    assert_eq!(contents(&again.take(2).await), numbered("e", 0..2));
}
