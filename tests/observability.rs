//! `GET /metrics`: the counters in the Prometheus/OpenMetrics text format, parseable and true.

use support::http::Response;
use support::metrics::parse;
use support::server::{TestServer, fast_config};

/// A scrape parses, ends with `# EOF`, and reports what just happened: an open stream, the
/// events sent, the queries made by kind, the notification-to-send latency, build info.
#[tokio::test]
async fn metrics_are_scraped_and_parsed() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "stored").await;
    let mut sse = server.stream("t").await;
    sse.take(1).await;
    server.events("t", "s1", "live", 2).await;
    sse.take(2).await;

    let scrape = Response::get(server.addr(), "/metrics", &[]).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .header("content-type")
            .expect("type")
            .starts_with("application/openmetrics-text")
    );
    let text = scrape.text().await;
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let metrics = parse(&text);
    let value = |name: &str| {
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };

    assert_eq!(value("taskstream_open_streams"), 1.0);
    assert_eq!(value("taskstream_live_tails"), 1.0);
    assert!(value("taskstream_connections") >= 1.0);
    assert_eq!(value("taskstream_events_sent_total"), 3.0);
    assert!(value(r#"taskstream_db_queries_total{kind="position"}"#) >= 1.0);
    assert!(value(r#"taskstream_db_queries_total{kind="events"}"#) >= 1.0);
    assert!(value(r#"taskstream_db_query_seconds_count{kind="events"}"#) >= 1.0);
    assert!(value("taskstream_notifications_total") >= 2.0);
    assert_eq!(value("taskstream_notify_to_send_seconds_count"), 2.0);
    assert_eq!(value("taskstream_listen_reconnects_total"), 0.0);
    // Plain mode: this instance LISTENs itself, and there is no bus.
    assert_eq!(value("taskstream_pg_listener"), 1.0);
    assert_eq!(value("taskstream_pg_listener_seat"), 0.0);
    assert_eq!(value("taskstream_nats_connected"), 0.0);
    assert_eq!(value("taskstream_nats_messages_received_total"), 0.0);
    assert_eq!(
        value("taskstream_catch_ups_total"),
        0.0,
        "the first live event needs no catch-up"
    );
    assert_eq!(
        value(&format!(
            r#"taskstream_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
}
