//! The live task list (`GET /tasks` with `Accept: text/event-stream`) over a real socket and a
//! real PostgreSQL: the snapshot, live changes (created, status, title, new session, deleted),
//! authorization, and reconnect.

use std::collections::HashMap;

use serde_json::{Value, json};
use support::auth::{token, with_auth};
use support::http::Response;
use support::server::{TestServer, fast_config};
use support::sse_parser::SseEvent;

const ACCEPT: (&str, &str) = ("accept", "text/event-stream");

/// Opens the live task list with `query` and any extra header.
async fn open(server: &TestServer, query: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![ACCEPT];
    headers.extend_from_slice(extra);
    let sse = Response::get(server.addr(), &format!("/tasks{query}"), &headers).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    sse
}

/// The ids of a snapshot frame, in order.
fn snapshot_ids(event: &SseEvent) -> Vec<String> {
    assert_eq!(event.event, "snapshot");
    event.json()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

/// What a client knows: each task's newest version.
type Known = HashMap<String, i64>;

/// The next `task` frame that a client applies: as a client does, it drops a row no newer than
/// the one it has (a notification of a change the snapshot already showed).
async fn next_row(sse: &mut Response, known: &mut Known) -> Value {
    loop {
        let event = sse.next().await.expect("a change");
        assert_eq!(event.event, "task", "{event:?}");
        assert!(
            event.id.is_empty(),
            "no cursor: a reconnect takes a snapshot"
        );
        let row = event.json();
        let id = row["id"].as_str().expect("id").to_owned();
        let version = row["version"].as_i64().expect("version");
        if known.get(&id).is_none_or(|&seen| version > seen) {
            known.insert(id, version);
            return row;
        }
    }
}

/// The versions of a snapshot.
fn known_from(snapshot: &SseEvent) -> Known {
    snapshot.json()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            let id = t["id"].as_str().expect("id").to_owned();
            (id, t["version"].as_i64().expect("version"))
        })
        .collect()
}

/// The snapshot lists the newest tasks first, `?limit=` of them, each with a version.
#[tokio::test]
async fn the_snapshot_comes_first_newest_first() {
    let server = TestServer::start(fast_config()).await;
    for t in ["old", "mid", "new"] {
        server.task(t, "InProgress").await;
    }
    let mut sse = open(&server, "?limit=2", &[]).await;
    let snapshot = sse.next().await.expect("snapshot");
    assert_eq!(snapshot_ids(&snapshot), ["new", "mid"]);
    let first = &snapshot.json()["tasks"][0];
    assert_eq!(first["status"], "InProgress");
    assert!(first["version"].as_i64().expect("version") > 0);
}

/// Creation, status, title, a new session and deletion each arrive as a frame with the task's
/// current row, whose version never goes back.
#[tokio::test]
async fn every_change_arrives_with_the_current_row() {
    let server = TestServer::start(fast_config()).await;
    server.task("a", "Open").await;
    let mut sse = open(&server, "", &[]).await;
    let snapshot = sse.next().await.expect("snapshot");
    assert_eq!(snapshot_ids(&snapshot), ["a"]);
    let known = &mut known_from(&snapshot);

    server.task("b", "InProgress").await;
    let created = next_row(&mut sse, known).await;
    assert_eq!(
        (created["id"].clone(), created["status"].clone()),
        (json!("b"), json!("InProgress"))
    );

    server.status("a", "InProgress").await;
    let status = next_row(&mut sse, known).await;
    assert_eq!(
        (status["id"].clone(), status["status"].clone()),
        (json!("a"), json!("InProgress"))
    );

    server
        .db
        .execute("UPDATE tasks SET title = 'renamed' WHERE id = 'a'", &[])
        .await
        .expect("retitle");
    let title = next_row(&mut sse, known).await;
    assert_eq!(title["title"], "renamed");
    assert!(title["version"].as_i64() >= status["version"].as_i64());

    server.event("a", "a-s1", "assistant", "first").await;
    let session = next_row(&mut sse, known).await;
    assert_eq!(session["id"], "a");
    assert!(
        session["version"].as_i64() > title["version"].as_i64(),
        "a new session is newer"
    );
    // Later events of the session change nothing in the list; the next change is the deletion.
    server.event("a", "a-s1", "assistant", "second").await;
    server
        .db
        .execute("DELETE FROM tasks WHERE id = 'b'", &[])
        .await
        .expect("delete");
    let deleted = loop {
        let event = sse.next().await.expect("deleted");
        if event.event == "task" && event.json()["id"] == "a" {
            continue; // the session's later events changed nothing: the same version again
        }
        break event;
    };
    assert_eq!(deleted.event, "task_deleted");
    assert_eq!(deleted.json(), json!({"id": "b"}));
}

/// A token sees only the tasks it covers, in the snapshot and in the changes; without a token
/// the list is `401`.
#[tokio::test]
async fn a_token_sees_only_its_tasks() {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("mine", "InProgress").await;
    server.task("theirs", "InProgress").await;
    let bearer = format!("Bearer {}", token(&["mine", "later"], 60));
    let mut sse = open(&server, "", &[("authorization", &bearer)]).await;
    let snapshot = sse.next().await.expect("snapshot");
    assert_eq!(snapshot_ids(&snapshot), ["mine"]);
    let known = &mut known_from(&snapshot);
    server.status("theirs", "Done").await;
    server.task("hidden", "Open").await;
    server.task("later", "Open").await;
    assert_eq!(
        next_row(&mut sse, known).await["id"],
        "later",
        "only covered tasks"
    );
    let anonymous = Response::get(server.addr(), "/tasks", &[ACCEPT]).await;
    assert_eq!(anonymous.status, 401);
}

/// A reconnect takes a new snapshot, which includes whatever changed while it was away.
#[tokio::test]
async fn a_reconnect_starts_from_a_new_snapshot() {
    let server = TestServer::start(fast_config()).await;
    server.task("a", "InProgress").await;
    let mut sse = open(&server, "", &[]).await;
    sse.next().await.expect("snapshot");
    drop(sse);
    server.task("b", "Open").await;
    server.status("a", "Done").await;
    let mut again = open(&server, "", &[]).await;
    let snapshot = again.next().await.expect("snapshot");
    assert_eq!(snapshot_ids(&snapshot), ["b", "a"]);
    assert_eq!(snapshot.json()["tasks"][1]["status"], "Done");
}

/// Without `Accept: text/event-stream`, `GET /tasks` is what it was (no stream).
#[tokio::test]
async fn other_clients_get_no_stream() {
    let server = TestServer::start(fast_config()).await;
    let plain = Response::get(server.addr(), "/tasks", &[]).await;
    assert_ne!(plain.header("content-type"), Some("text/event-stream"));
}
