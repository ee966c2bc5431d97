//! Logs: one line per stream end with task, session, duration, events and reason; JSON lines
//! when asked; no token or secret in any line; text lines that ids cannot forge, without colour
//! codes outside a terminal. (Its own test binary: it installs the global log subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use support::child::ChildServer;
use support::cluster::{connect, fresh_database};
use support::http::Response;
use support::server::{TestServer, fast_config};
use support::wait::eventually;
use support::writer::{insert_event, insert_task};
use taskstream::Config;
use taskstream::config::Secret;

/// Collects every log line written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// A stream's end is one JSON line with its task, session, duration, events and reason, and
/// neither the token nor the secret appears in any line, whatever happened.
#[tokio::test]
async fn stream_ends_are_logged_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .init();

    let secret = "a-secret-that-must-never-be-logged";
    let server = TestServer::start(Config {
        jwt_secret: Some(Secret(secret.as_bytes().to_vec())),
        ..fast_config()
    })
    .await;
    server.task("t", "Done").await;
    server.events("t", "s1", "e", 3).await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60;
    let token = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({ "tasks": ["t"], "exp": exp }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token");
    let bearer = format!("Bearer {token}");
    let mut sse = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("authorization", &bearer)],
    )
    .await;
    sse.until_complete().await;
    let forged = format!("{token}x");
    let refused = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("cookie", &format!("taskstream_token={forged}"))],
    )
    .await;
    assert_eq!(refused.status, 401);

    eventually("the stream's end to be logged", || {
        captured.text().contains("stream ended")
    })
    .await;
    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("stream ended"))
        .expect("an end line");
    let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    let fields = &entry["fields"];
    assert_eq!(fields["task"], "t");
    assert_eq!(fields["session"], "s1");
    assert_eq!(fields["events"], 3);
    assert_eq!(fields["reason"], "complete");
    assert!(fields["duration_ms"].is_u64());
    for needle in [secret, token.as_str(), forged.as_str()] {
        assert!(!text.contains(needle), "a secret reached the logs");
    }
    // The signature alone must not appear either.
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!text.contains(signature));
}

/// In the text format, a session id stored with CR, LF and an escape sequence
/// cannot start a forged log line or drive a terminal: it is written escaped. And with
/// standard error not a terminal (a pipe here, a file or the journal in production), no line
/// carries a colour code. Against the binary, whose logging this is.
#[tokio::test]
async fn text_logs_cannot_be_forged_and_have_no_colours() {
    let url = fresh_database().await;
    let db = connect(&url).await;
    insert_task(&db, "t", "Done").await;
    // The schema refuses such ids now; a row stored before that rule existed (or under an owner
    // who dropped it) still reaches the logs, which must stay safe on their own.
    db.batch_execute("ALTER TABLE agent_sessions DROP CONSTRAINT agent_sessions_id_rules")
        .await
        .expect("drop the id rule");
    let session = "s1\nERROR forged line\r\n\u{1b}[2J";
    insert_event(&db, "t", session, "assistant", "x").await;
    let server = ChildServer::start(
        env!("CARGO_BIN_EXE_taskstream"),
        &url,
        &["--log-format", "text", "--log", "info"],
    )
    .await;
    let mut sse = Response::get(server.addr(), "/tasks/t/events/stream", &[]).await;
    sse.until_complete().await;
    eventually("the stream's end to be logged", || {
        server.stderr().iter().any(|l| l.contains("stream ended"))
    })
    .await;
    let lines = server.stderr();
    let ended = lines
        .iter()
        .find(|l| l.contains("stream ended"))
        .expect("an end line");
    assert!(
        ended.contains(r#"session="s1\nERROR forged line\r\n\u{1b}[2J""#),
        "{ended}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("forged") || l == ended),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no escape sequence at all: {lines:#?}"
    );
}
