//! The JSON API over a real socket against real PostgreSQL: writing events and tasks, reading
//! them without a stream, and how each maps onto the stream itself.

use serde_json::{Value, json};
use support::auth::{sign, with_auth};
use support::cluster::fresh_database;
use support::http::Response;
use support::ledger::{committed, contents};
use support::roles::{SERVER, WRITER, login};
use support::server::{TestServer, fast_config};
use taskstream::Config;

async fn post(server: &TestServer, task: &str, body: &Value) -> Response {
    Response::json_request(
        "POST",
        server.addr(),
        &format!("/tasks/{task}/events"),
        &[],
        body,
    )
    .await
}

async fn put(server: &TestServer, task: &str, body: &Value) -> Response {
    Response::json_request("PUT", server.addr(), &format!("/tasks/{task}"), &[], body).await
}

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let response = Response::get(server.addr(), path, &[]).await;
    let status = response.status.as_u16();
    (status, response.json().await)
}

fn event(session: &str, kind: &str, content: Value) -> Value {
    json!({ "session": session, "type": kind, "content": content })
}

/// Ids of a `201` answer's events.
fn ids(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Events written over HTTP reach the stream with exactly the ids the `201` answered, string
/// content as it is and other JSON as the text the client sent; a `PUT` of the status ends the
/// stream with `complete`.
#[tokio::test]
async fn a_stream_receives_events_written_over_http_and_ends_on_put() {
    let server = TestServer::start(fast_config()).await;
    let created = put(
        &server,
        "t",
        &json!({ "title": "Fix it", "status": "InProgress" }),
    )
    .await;
    assert_eq!(created.status, 201);
    let task = created.json().await;
    assert_eq!(task["id"], "t");
    assert_eq!(task["title"], "Fix it");
    assert_eq!(task["session"], Value::Null);

    let mut stream = server.stream("t").await;
    let one = post(&server, "t", &event("s1", "assistant", json!("hello"))).await;
    assert_eq!(one.status, 201);
    assert_eq!(one.header("content-type"), Some("application/json"));
    let one = one.json().await;
    assert_eq!(one["events"][0]["seq"], 1);
    let raw = r#"[{"session":"s1","type":"toolcall","content":{"tool":"read","args":{"n":1.50}}},
                  {"session":"s1","type":"cost","content":0.10}]"#;
    let batch = Response::send(
        "POST",
        server.addr(),
        "/tasks/t/events",
        &[("content-type", "application/json")],
        raw,
    )
    .await;
    assert_eq!(batch.status, 201);
    let batch = batch.json().await;
    let seqs: Vec<i64> = batch["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [2, 3], "a batch gets consecutive seqs in array order");

    let received = stream.take(3).await;
    let mut expected = ids(&one);
    expected.extend(ids(&batch));
    assert_eq!(
        received.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(received[0].data, r#"{"content":"hello"}"#);
    assert_eq!(received[1].event, "toolcall");
    assert_eq!(received[1].data, r#"{"tool":"read","args":{"n":1.5}}"#);
    assert_eq!(received[2].data, r#"{"cost":"0.10"}"#);
    let stored: Vec<String> = server
        .db
        .query("SELECT content FROM agent_events ORDER BY seq", &[])
        .await
        .expect("read back")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        stored,
        ["hello", r#"{"tool":"read","args":{"n":1.50}}"#, "0.10"],
        "stored as sent"
    );

    let updated = put(&server, "t", &json!({ "status": "Done" })).await;
    assert_eq!(updated.status, 200);
    let updated = updated.json().await;
    assert_eq!(
        updated["title"], "Fix it",
        "an update keeps what it does not name"
    );
    assert_eq!(updated["status"], "Done");
    assert_eq!(updated["session"], json!({ "id": "s1", "last_seq": 3 }));
    let end = stream.next().await.expect("complete");
    assert_eq!(end.event, "complete");
    assert!(stream.ends().await);
}

/// A batch is all or nothing: an item PostgreSQL refuses (here: a constraint the test adds)
/// leaves nothing written, and the session's next event still gets the next seq.
#[tokio::test]
async fn a_batch_with_one_bad_item_writes_nothing() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server
        .db
        .batch_execute(
            "ALTER TABLE agent_events ADD CONSTRAINT no_poison CHECK (content <> 'poison')",
        )
        .await
        .expect("constraint");
    let batch = json!([
        event("s1", "assistant", json!("a")),
        event("s1", "assistant", json!("b")),
        event("s1", "assistant", json!("poison")),
    ]);
    let refused = post(&server, "t", &batch).await;
    assert_eq!(refused.status, 400);
    assert!(committed(&server.db, "t").await.is_empty());
    // Refused before PostgreSQL: another session in the batch.
    let mixed = json!([
        event("s1", "assistant", json!("a")),
        event("s2", "assistant", json!("b")),
    ]);
    let refused = post(&server, "t", &mixed).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json().await["error"]
            .as_str()
            .expect("error")
            .contains("[1].session")
    );
    let ok = post(&server, "t", &event("s1", "assistant", json!("a"))).await;
    assert_eq!(ok.json().await["events"][0]["seq"], 1, "no seq was used up");
}

/// Every refusal has its status and a short JSON body.
#[tokio::test]
async fn refusals_have_their_status() {
    let config = Config {
        max_write_bytes: 1024,
        max_write_events: 2,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("mine", "InProgress").await;
    server.task("other", "InProgress").await;
    server.event("other", "theirs", "assistant", "x").await;
    let good = event("s1", "assistant", json!("hi"));

    let missing = post(&server, "nope", &good).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json().await["error"], "no such task");
    let foreign = post(&server, "mine", &event("theirs", "assistant", json!("x"))).await;
    assert_eq!(foreign.status, 409);
    let text = Response::send(
        "POST",
        server.addr(),
        "/tasks/mine/events",
        &[("content-type", "text/plain")],
        good.to_string(),
    )
    .await;
    assert_eq!(text.status, 415);
    let untyped = Response::send("POST", server.addr(), "/tasks/mine/events", &[], "{}").await;
    assert_eq!(untyped.status, 415);
    for (body, status) in [
        ("not json", 400),
        ("", 400),
        (r#"{"type":"a"}"#, 400),
        (r#"{"session":"s","type":"a","content":"\u0000"}"#, 400),
        (r#"{"session":"s","session":"s","type":"a"}"#, 400),
    ] {
        let answer = Response::send(
            "POST",
            server.addr(),
            "/tasks/mine/events",
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(answer.status, status, "{body}");
        assert!(answer.json().await["error"].is_string());
    }
    let nul = Response::send(
        "POST",
        server.addr(),
        "/tasks/mine/events",
        &[("content-type", "application/json")],
        r#"{"session":"s","type":"a","content":"x\u0000"}"#,
    )
    .await;
    assert!(
        nul.json().await["error"]
            .as_str()
            .expect("error")
            .contains("content")
    );
    let big = post(
        &server,
        "mine",
        &event("s1", "assistant", json!("x".repeat(2000))),
    )
    .await;
    assert_eq!(big.status, 413);
    let many = post(&server, "mine", &json!([good, good, good])).await;
    assert_eq!(many.status, 413);
    let wrong = Response::request("DELETE", server.addr(), "/tasks/mine/events", &[]).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, POST"));
    let wrong = Response::request("PATCH", server.addr(), "/tasks/mine", &[]).await;
    assert_eq!(wrong.header("allow"), Some("GET, PUT"));
    let bad_put = put(&server, "mine", &json!({ "status": 3 })).await;
    assert_eq!(bad_put.status, 400);
    assert!(committed(&server.db, "mine").await.is_empty());
}

/// `GET /tasks/{id}` is JSON for programs (curl's `*/*` too) and the viewer's page for a
/// browser, with `vary: accept`; `GET /tasks` pages newest first.
#[tokio::test]
async fn tasks_read_as_json() {
    let server = TestServer::start(fast_config()).await;
    for id in ["a", "b", "c"] {
        assert_eq!(put(&server, id, &json!({ "title": id })).await.status, 201);
    }
    server.event("b", "s1", "assistant", "x").await;
    let json = Response::get(server.addr(), "/tasks/b", &[("accept", "*/*")]).await;
    assert_eq!(json.status, 200);
    assert_eq!(json.header("vary"), Some("accept"));
    let task = json.json().await;
    assert_eq!(task["status"], "Open");
    assert_eq!(task["session"], json!({ "id": "s1", "last_seq": 1 }));
    assert!(task["created_at"].as_str().expect("time").ends_with('Z'));
    let page = Response::get(
        server.addr(),
        "/tasks/b",
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    )
    .await;
    assert!(
        page.header("content-type")
            .expect("type")
            .starts_with("text/html")
    );
    assert_eq!(page.header("vary"), Some("accept"));
    let (status, missing) = get_json(&server, "/tasks/zzz").await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("no such task"))
    );

    let (status, first) = get_json(&server, "/tasks?limit=2").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = first["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(names, ["c", "b"]);
    assert_eq!(first["next"], "b");
    let (_, second) = get_json(&server, "/tasks?limit=2&before=b").await;
    assert_eq!(second["tasks"][0]["id"], "a");
    assert_eq!(second["next"], Value::Null);
}

/// A program pages through a session by cursor and then switches to the stream at the last
/// cursor it read: nothing lost, nothing repeated, the same ids, names and data.
#[tokio::test]
async fn paging_then_streaming_from_the_last_cursor() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    for i in 0..7 {
        let kind = if i % 2 == 0 { "assistant" } else { "ToolCall" };
        server.event("t", "s1", kind, &format!("e{i}: x")).await;
    }
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) =
            get_json(&server, &format!("/tasks/t/events?limit=3&after={after}")).await;
        assert_eq!(status, 200);
        assert_eq!(page["in_progress"], true);
        let events = page["events"].as_array().expect("events").clone();
        if events.is_empty() {
            break;
        }
        after = events.last().expect("last")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        paged.extend(events);
    }
    assert_eq!(paged.len(), 7);
    let mut stream = server.stream("t").await;
    let streamed = stream.take(7).await;
    for (page, frame) in paged.iter().zip(&streamed) {
        assert_eq!(page["id"], frame.id.as_str());
        assert_eq!(page["event"], frame.event.as_str());
        assert_eq!(page["data"], frame.json(), "data is JSON, not a string");
    }
    server.event("t", "s1", "assistant", "e7").await;
    let mut resumed = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &after)],
    )
    .await;
    assert_eq!(contents(&resumed.take(1).await), ["e7"]);
    let (_, bad) = get_json(&server, "/tasks/t/events?after=nonsense").await;
    assert!(bad["error"].is_string());
}

/// With authentication on, writes need the `write` claim for the task; `tasks` alone gets
/// `403`, `write` grants no reads, and a token may carry `write` without `tasks`.
#[tokio::test]
async fn writes_need_the_write_claim() {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("t", "InProgress").await;
    let exp = support::auth::now() + 60;
    let reader = sign(&json!({ "tasks": ["t"], "exp": exp }));
    let writer = sign(&json!({ "write": ["t"], "exp": exp }));
    let everything = sign(&json!({ "tasks": ["*"], "write": ["*"], "exp": exp }));
    let neither = sign(&json!({ "exp": exp }));
    let body = event("s1", "assistant", json!("x"));
    let send = |token: String| {
        let body = body.clone();
        let addr = server.addr();
        async move {
            let auth = format!("Bearer {token}");
            Response::json_request(
                "POST",
                addr,
                "/tasks/t/events",
                &[("authorization", &auth)],
                &body,
            )
            .await
            .status
        }
    };
    assert_eq!(
        Response::json_request("POST", server.addr(), "/tasks/t/events", &[], &body)
            .await
            .status,
        401
    );
    assert_eq!(send(reader.clone()).await, 403);
    assert_eq!(send(neither).await, 401);
    assert_eq!(send(writer.clone()).await, 201);
    assert_eq!(send(everything).await, 201);
    let put = Response::json_request(
        "PUT",
        server.addr(),
        "/tasks/new",
        &[("authorization", &format!("Bearer {reader}"))],
        &json!({}),
    )
    .await;
    assert_eq!(put.status, 403);
    let read = |token: String, path: &'static str| {
        let addr = server.addr();
        async move {
            let auth = format!("Bearer {token}");
            Response::get(addr, path, &[("authorization", &auth)])
                .await
                .status
        }
    };
    assert_eq!(read(writer.clone(), "/tasks/t").await, 403);
    assert_eq!(read(writer, "/tasks/t/events").await, 403);
    assert_eq!(read(reader.clone(), "/tasks/t").await, 200);
    assert_eq!(read(reader, "/tasks/t/events").await, 200);
}

/// With authentication off, a server bound to a non-loopback address refuses anonymous writes
/// unless `--allow-anonymous-writes` says otherwise; reads are unaffected.
#[tokio::test]
async fn no_anonymous_writes_off_loopback_unless_allowed() {
    let url = fresh_database().await;
    let db = support::cluster::connect(&url).await;
    support::writer::insert_task(&db, "t", "InProgress").await;
    for (allow, expected) in [(false, 403), (true, 201)] {
        let config = Config {
            allow_anonymous_writes: allow,
            ..fast_config()
        };
        let handle = taskstream::start(config, &url, "0.0.0.0:0".parse().expect("address"))
            .await
            .expect("start");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], handle.local_addr().port()));
        let answer = Response::json_request(
            "POST",
            addr,
            "/tasks/t/events",
            &[],
            &event("s1", "assistant", json!("x")),
        )
        .await;
        assert_eq!(answer.status, expected, "allow: {allow}");
        if !allow {
            assert!(
                answer.json().await["error"]
                    .as_str()
                    .expect("error")
                    .contains("--allow-anonymous-writes")
            );
        }
        assert_eq!(Response::get(addr, "/tasks/t", &[]).await.status, 200);
        handle.shutdown();
        handle.stopped().await;
    }
}

/// A server whose login lacks writer rights answers writes `503` with the reason and serves
/// reads; granted `taskstream_writer` too, it writes.
#[tokio::test]
async fn writes_need_the_logins_rights() {
    let url = fresh_database().await;
    let owner = support::cluster::connect(&url).await;
    support::writer::insert_task(&owner, "t", "InProgress").await;
    let config = Config {
        migrate: false,
        ..fast_config()
    };
    let reader_only = TestServer::start_on(config.clone(), login(&url, &[SERVER]).await).await;
    let refused = post(&reader_only, "t", &event("s1", "assistant", json!("x"))).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    let reason = refused.json().await["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(reason.contains("INSERT"), "{reason}");
    let (status, _) = get_json(&reader_only, "/tasks/t").await;
    assert_eq!(status, 200);

    let both = TestServer::start_on(config, login(&url, &[SERVER, WRITER]).await).await;
    assert_eq!(
        post(&both, "t", &event("s1", "assistant", json!("x")))
            .await
            .status,
        201
    );
    assert_eq!(
        put(&both, "t", &json!({ "status": "Done" })).await.status,
        200
    );
    // An agent's own login cannot touch the servers' idempotency keys.
    let agent = support::cluster::connect(&login(&url, &[WRITER]).await).await;
    let error = agent
        .batch_execute("SELECT * FROM taskstream_idempotency")
        .await
        .expect_err("no rights");
    assert_eq!(support::roles::sqlstate(&error), Some("42501"));
}

/// The JSON API follows the CORS allow-list: preflights for `PUT`, `POST` and `DELETE` with
/// `content-type` and `idempotency-key`, and a cross-origin write is answered with the origin
/// echoed and `retry-after` and `idempotent-replayed` readable.
#[tokio::test]
async fn cors_preflights_the_json_api() {
    let config = Config {
        cors_origins: vec!["https://app.example".to_owned()],
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    for (path, method) in [
        ("/tasks/t", "PUT"),
        ("/tasks/t/events", "POST"),
        ("/session", "DELETE"),
        ("/tasks", "GET"),
    ] {
        let preflight = Response::request(
            "OPTIONS",
            server.addr(),
            path,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", method),
                (
                    "access-control-request-headers",
                    "content-type, idempotency-key",
                ),
            ],
        )
        .await;
        assert_eq!(preflight.status, 204, "{path}");
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let methods = preflight
            .header("access-control-allow-methods")
            .expect("methods");
        assert!(methods.contains(method), "{methods}");
        let headers = preflight
            .header("access-control-allow-headers")
            .expect("headers");
        assert!(
            headers.contains("content-type") && headers.contains("idempotency-key"),
            "{headers}"
        );
    }
    let refused = Response::request(
        "OPTIONS",
        server.addr(),
        "/tasks/t/events",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.status, 403);
    let written = Response::json_request(
        "POST",
        server.addr(),
        "/tasks/t/events",
        &[("origin", "https://app.example")],
        &event("s1", "assistant", json!("x")),
    )
    .await;
    assert_eq!(written.status, 201);
    assert_eq!(
        written.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        written
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("idempotent-replayed"))
    );
}
