//! Logs: one line per stream end with task, session, duration, events and reason; JSON lines
//! when asked; no token or secret in any line. (Its own test binary: it installs the global
//! log subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use support::http::Response;
use support::server::{TestServer, fast_config};
use support::wait::eventually;
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
        jwt_secret: Some(Secret(secret.to_owned())),
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
