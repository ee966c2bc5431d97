//! The event stream end to end over a real socket and a real PostgreSQL: replay, live tail,
//! resume, sessions, completion, and the error answers.

use std::time::Duration;

use support::http::Response;
use support::ledger::{contents, numbered};
use support::server::{TestServer, fast_config};
use support::wait::eventually;

/// Stored events are replayed in seq order, each with its cursor and mapped name and data.
#[tokio::test]
async fn replays_stored_events_in_order() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "stored", 5).await;

    let mut sse = server.stream("t").await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.header("cache-control"), Some("no-cache"));
    assert_eq!(sse.header("x-accel-buffering"), Some("no"));
    let events = sse.take(5).await;
    assert_eq!(sse.parser.retry, Some(1000), "the retry hint comes first");
    assert_eq!(contents(&events), numbered("stored", 0..5));
    assert!(events.iter().all(|e| e.event == "assistant"));
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["czE:1", "czE:2", "czE:3", "czE:4", "czE:5"]);
}

/// An event committed while a client is connected reaches it.
#[tokio::test]
async fn delivers_new_events_live() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "before").await;
    let mut sse = server.stream("t").await;
    assert_eq!(contents(&sse.take(1).await), ["before"]);

    for i in 0..3 {
        server
            .event("t", "s1", "assistant", &format!("live {i}"))
            .await;
        assert_eq!(contents(&sse.take(1).await), [format!("live {i}")]);
    }
}

/// `complete` comes after every event committed before the status change, and ends the stream.
#[tokio::test]
async fn complete_follows_the_last_event_committed_before_the_status_change() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    server.events("t", "s1", "e", 20).await;
    server.status("t", "Review").await;

    let events = sse.until_complete().await;
    let (last, before) = events.split_last().expect("events");
    assert_eq!(contents(before), numbered("e", 0..20));
    assert_eq!(last.event, "complete");
    assert_eq!(last.json(), serde_json::json!({}));
    assert_eq!(last.id, "czE:20:c");
    assert!(sse.ends().await, "the response ends after complete");
}

/// A task that is not `InProgress` is replayed whole and completed at once.
#[tokio::test]
async fn a_finished_task_is_replayed_then_completed() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "Done").await;
    server.events("t", "s1", "e", 3).await;
    let mut sse = server.stream("t").await;
    let events = sse.until_complete().await;
    assert_eq!(contents(&events[..3]), numbered("e", 0..3));
    assert!(sse.ends().await);
}

/// A stored row of type `complete` is an ordinary event (`agent_complete`), not the end.
#[tokio::test]
async fn a_stored_complete_row_does_not_end_the_stream() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "complete", "").await;
    server.event("t", "s1", "assistant", "after").await;
    let mut sse = server.stream("t").await;
    let events = sse.take(2).await;
    assert_eq!(events[0].event, "agent_complete");
    assert_eq!(events[1].json()["content"], "after");
    server.event("t", "s1", "assistant", "still live").await;
    assert_eq!(contents(&sse.take(1).await), ["still live"]);
}

/// `Last-Event-ID` resumes right after the cursor: nothing missed, nothing repeated.
#[tokio::test]
async fn resumes_after_the_last_event_id_header() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 6).await;
    let mut sse = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", "czE:4")],
    )
    .await;
    assert_eq!(contents(&sse.take(2).await), numbered("e", 4..6));
    server.event("t", "s1", "assistant", "e 6").await;
    assert_eq!(contents(&sse.take(1).await), ["e 6"]);
}

/// `?last_event_id=` resumes the same way (first requests, curl, scripts).
#[tokio::test]
async fn resumes_after_the_query_cursor() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 6).await;
    let mut sse = Response::get(
        server.addr(),
        "/tasks/t/events/stream?last_event_id=czE%3A3",
        &[],
    )
    .await;
    assert_eq!(contents(&sse.take(3).await), numbered("e", 3..6));
}

/// With both, the header wins: a browser reconnects to the original URL with a newer header.
#[tokio::test]
async fn the_header_wins_over_the_query() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 6).await;
    let mut sse = Response::get(
        server.addr(),
        "/tasks/t/events/stream?last_event_id=czE:1",
        &[("last-event-id", "czE:5")],
    )
    .await;
    assert_eq!(contents(&sse.take(1).await), ["e 5"]);
}

/// A cursor of an older session (or of a session the task does not have) starts the latest
/// session from its beginning.
#[tokio::test]
async fn an_older_sessions_cursor_starts_the_latest_session() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "old", "old", 3).await;
    server.events("t", "new", "new", 2).await;
    for cursor in ["b2xk:3", "b2xk:1", "dW5rbm93bg:7"] {
        let mut sse = Response::get(
            server.addr(),
            "/tasks/t/events/stream",
            &[("last-event-id", cursor)],
        )
        .await;
        let events = sse.take(2).await;
        assert_eq!(contents(&events), numbered("new", 0..2), "cursor {cursor}");
        assert_eq!(events[0].id, "bmV3:1");
    }
}

/// A session that starts while a stream is open is followed from its beginning.
#[tokio::test]
async fn a_new_session_is_followed_live() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "first", "first", 2).await;
    let mut sse = server.stream("t").await;
    assert_eq!(contents(&sse.take(2).await), numbered("first", 0..2));

    server.events("t", "second", "second", 3).await;
    let events = sse.take(3).await;
    assert_eq!(contents(&events), numbered("second", 0..3));
    assert_eq!(events[0].id, "c2Vjb25k:1");
}

/// A reconnect with the `complete` cursor gets `204` (which stops EventSource) while the task is
/// still finished and nothing is past the cursor, and the stream otherwise.
#[tokio::test]
async fn no_content_after_complete_and_not_when_more_exists() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "Done").await;
    server.events("t", "s1", "e", 2).await;
    let mut sse = server.stream("t").await;
    let complete = sse.until_complete().await.pop().expect("complete");

    let again = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &complete.id)],
    )
    .await;
    assert_eq!(again.status, 204);

    server.event("t", "s1", "assistant", "late").await;
    let mut more = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &complete.id)],
    )
    .await;
    assert_eq!(more.status, 200);
    let events = more.until_complete().await;
    assert_eq!(contents(&events[..1]), ["late"]);

    server.status("t", "InProgress").await;
    let mut reopened = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &events[1].id)],
    )
    .await;
    assert_eq!(reopened.status, 200, "a task back in progress streams on");
    server.event("t", "s1", "assistant", "reopened").await;
    assert_eq!(contents(&reopened.take(1).await), ["reopened"]);
}

/// A task without a session waits while `InProgress` and streams its first session.
#[tokio::test]
async fn a_task_without_a_session_waits_while_in_progress() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    assert_eq!(sse.status, 200);
    assert!(sse.next_within(Duration::from_millis(400)).await.is_none());
    server.event("t", "s1", "assistant", "first").await;
    assert_eq!(contents(&sse.take(1).await), ["first"]);
}

/// A task without a session that is not `InProgress` completes at once, with a cursor that
/// names no session, and that cursor then gets `204`.
#[tokio::test]
async fn a_finished_task_without_a_session_completes_at_once() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "Open").await;
    let mut sse = server.stream("t").await;
    let events = sse.until_complete().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "~:0:c");
    let again = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", "~:0:c")],
    )
    .await;
    assert_eq!(again.status, 204);
}

/// Deleting a task ends its open streams with `complete`.
#[tokio::test]
async fn deleting_a_task_completes_its_streams() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 2).await;
    let mut sse = server.stream("t").await;
    assert_eq!(sse.take(2).await.len(), 2);
    server
        .db
        .execute("DELETE FROM tasks WHERE id = 't'", &[])
        .await
        .expect("delete");
    let events = sse.until_complete().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "czE:2:c");
}

/// Unknown tasks and paths are `404`, other methods `405` with `allow`, malformed input `400`,
/// all as short JSON bodies.
#[tokio::test]
async fn errors_are_json_with_the_right_status() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let addr = server.addr();

    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case<'_>; 9] = [
        ("GET", "/tasks/missing/events/stream", &[], 404),
        ("GET", "/nowhere", &[], 404),
        ("GET", "/tasks/t/events/more", &[], 404),
        ("POST", "/tasks/t/events/stream", &[], 405),
        ("DELETE", "/healthz", &[], 405),
        (
            "GET",
            "/tasks/t/events/stream",
            &[("last-event-id", "garbage")],
            400,
        ),
        (
            "GET",
            "/tasks/t/events/stream?last_event_id=czE:-1",
            &[],
            400,
        ),
        ("GET", "/tasks/%ff/events/stream", &[], 400),
        ("GET", "/tasks/%zz/events/stream", &[], 400),
    ];
    for (method, path, headers, status) in cases {
        let response = Response::request(method, addr, path, headers).await;
        assert_eq!(response.status, status, "{method} {path} {headers:?}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        if status == 405 {
            assert_eq!(response.header("allow"), Some("GET"));
        }
        let body = response.json().await;
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

/// `/healthz` and `/readyz` answer `200` while the database is up.
#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start(fast_config()).await;
    assert_eq!(
        Response::get(server.addr(), "/healthz", &[]).await.status,
        200
    );
    assert_eq!(
        Response::get(server.addr(), "/readyz", &[]).await.status,
        200
    );
}

/// Hostile `event_type` values cannot forge fields or events: each row is exactly one event
/// whose name is sanitised, and no CR or NUL reaches the wire.
#[tokio::test]
async fn injection_attempts_in_event_type_stay_one_event() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let hostile = [
        "assistant\ndata: injected\n\nevent: evil",
        "note\rid: 666",
        "a\r\nb",
        "x\u{1}y",
        "retry: 1\n\n",
    ];
    for event_type in hostile {
        server
            .event("t", "s1", event_type, "payload\r\n\ndata: forged")
            .await;
    }
    let mut sse = server.stream("t").await;
    let events = sse.take(hostile.len()).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "assistant_data__injected__event__evil",
            "note_id__666",
            "a__b",
            "x_y",
            "retry__1__"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.id, format!("czE:{}", i + 1));
        assert_eq!(event.json()["content"], "payload\r\n\ndata: forged");
    }
    assert_eq!(sse.parser.retry, Some(1000));
    assert!(!sse.raw.contains(&b'\r') && !sse.raw.contains(&0));
}

/// A client that goes away is noticed (its stream task ends) within a few keep-alive intervals,
/// even while no events flow.
#[tokio::test]
async fn a_dropped_clients_stream_task_ends() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    sse.read_more().await; // the retry hint: the stream task runs
    assert_eq!(server.handle.metrics().open_streams.get(), 1);
    drop(sse);
    eventually("the stream task to end", || {
        server.handle.metrics().open_streams.get() == 0
    })
    .await;
    eventually("the tail to be dropped", || server.handle.tail_count() == 0).await;
}

/// During silence a `: keep-alive` comment is sent every keep-alive interval.
#[tokio::test]
async fn silence_is_filled_with_keep_alives() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    while sse.parser.comments.len() < 2 {
        assert!(sse.read_more().await);
    }
    assert!(sse.parser.comments.iter().all(|c| c == " keep-alive"));
}
