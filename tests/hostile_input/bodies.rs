//! Hostile JSON API bodies: deep nesting, huge numbers, invalid UTF-8, duplicate keys, NUL,
//! 10 MB (declared or chunked), and a body that never finishes. Each gets its status and a
//! short JSON error, nothing is written, and the server goes on serving.

use std::net::SocketAddr;

use support::http::Response;
use support::ledger::committed;
use support::server::{TestServer, fast_config};
use support::wait::WAIT;
use taskstream::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/tasks/t/events";

/// `POST` of `body` (any bytes) as JSON: the status and the body's `error`.
async fn post_raw(server: &TestServer, body: Vec<u8>) -> (u16, String) {
    let response = Response::send(
        "POST",
        server.addr(),
        PATH,
        &[("content-type", "application/json")],
        body,
    )
    .await;
    let status = response.status.as_u16();
    let error = response.json().await["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, error)
}

/// Sends `head`, then `chunks` from another task (ignoring failures: the server may answer
/// and close before taking it all), and returns the status line's code.
async fn status_while_sending(addr: SocketAddr, head: String, chunks: Vec<Vec<u8>>) -> u16 {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let sending = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.ok()?;
        for chunk in chunks {
            write.write_all(&chunk).await.ok()?;
        }
        // Keep the connection open: the server must answer without the rest.
        Some(write)
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(WAIT, read.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    sending.abort();
    let line = String::from_utf8_lossy(&answer);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line")
}

async fn server() -> TestServer {
    let config = Config {
        header_timeout: std::time::Duration::from_secs(1),
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server
}

/// Malformed JSON of every kind is `400` with a reason, and nothing is written.
#[tokio::test]
async fn malformed_bodies_are_refused_with_a_reason() {
    let server = server().await;
    let deep = format!(
        r#"{{"session":"s","type":"a","content":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deep nesting", deep.into_bytes(), "recursion"),
        ("deep array", "[".repeat(1_000_000).into_bytes(), "JSON"),
        (
            "a number beyond a double",
            br#"{"session":"s","type":"a","content":1e400}"#.to_vec(),
            "number",
        ),
        (
            "invalid UTF-8",
            b"{\"session\":\"s\",\"type\":\"a\",\"content\":\"\xff\xfe\"}".to_vec(),
            "unicode",
        ),
        (
            "a lone surrogate",
            br#"{"session":"s","type":"a","content":"\ud800"}"#.to_vec(),
            "",
        ),
        (
            "duplicate keys deep inside",
            br#"{"session":"s","type":"a","content":{"a":{"b":1,"b":2}}}"#.to_vec(),
            "content.a",
        ),
        (
            "NUL in a key",
            br#"{"session":"s","type":"a","content":{"k\u0000":1}}"#.to_vec(),
            "NUL",
        ),
        (
            "NUL in the session",
            br#"[{"session":"s\u0000","type":"a"}]"#.to_vec(),
            "[0].session",
        ),
        ("empty", Vec::new(), ""),
        ("a BOM", b"\xef\xbb\xbf{}".to_vec(), ""),
    ];
    for (what, body, reason) in cases {
        let (status, error) = post_raw(&server, body).await;
        assert_eq!(status, 400, "{what}: {error}");
        assert!(
            !error.is_empty() && error.contains(reason),
            "{what}: {error}"
        );
    }
    assert!(committed(&server.db, "t").await.is_empty());
}

/// A huge integer is kept digit for digit.
#[tokio::test]
async fn huge_numbers_keep_their_digits() {
    let server = server().await;
    let digits = "9".repeat(300);
    let body = format!(r#"{{"session":"s","type":"cost","content":{digits}}}"#);
    let (status, _) = post_raw(&server, body.into_bytes()).await;
    assert_eq!(status, 201);
    let stored: String = server
        .db
        .query_one("SELECT content FROM agent_events", &[])
        .await
        .expect("stored")
        .get(0);
    assert_eq!(stored, digits);
}

/// 10 MB is `413` whether it is declared up front or sent chunked, without reading it all;
/// a body that never finishes is `408` after `--header-timeout`; the server serves on.
#[tokio::test]
async fn oversized_and_slow_bodies_end_promptly() {
    let server = server().await;
    let ten_mb = 10 * 1024 * 1024;
    let declared = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {ten_mb}\r\n\r\n"
    );
    assert_eq!(
        status_while_sending(server.addr(), declared, vec![b"[".to_vec()]).await,
        413
    );
    let chunked = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = {
        let data = vec![b' '; 64 * 1024];
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        out
    };
    let chunks = vec![chunk; ten_mb / (64 * 1024)];
    assert_eq!(
        status_while_sending(server.addr(), chunked, chunks).await,
        413
    );
    let slow = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n"
    );
    assert_eq!(
        status_while_sending(server.addr(), slow, vec![b"{\"session\"".to_vec()]).await,
        408
    );
    assert!(committed(&server.db, "t").await.is_empty());
    let (status, _) = post_raw(&server, br#"{"session":"s","type":"a"}"#.to_vec()).await;
    assert_eq!(status, 201, "the server serves on");
}
