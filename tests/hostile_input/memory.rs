//! Readers that pin memory: clients that read just enough to stay connected, on a session of
//! large events, against the binary as a child process (so that the test's own memory does
//! not count).

use std::time::Duration;

use support::child::ChildServer;
use support::cluster::{connect, fresh_database};
use support::http::Response;
use support::wait::WAIT;
use support::writer::{insert_event, insert_task};
use taskstream::config::DEFAULT_REPLAY_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Bytes of each event's content.
const EVENT_BYTES: usize = 1_000_000;

/// Events stored before the readers come, and written while they read.
const STORED: usize = 150;
const LIVE: usize = 50;

/// Readers that take 1 KB a second.
const TRICKLES: usize = 20;

/// The safety bound of the server's memory growth (not a performance target).
const MAX_GROWTH_KIB: u64 = 128 * 1024;

/// Event `i`'s content: its number, then filler up to [`EVENT_BYTES`].
fn content(i: usize) -> String {
    let mut text = format!("{i:06} ");
    text.extend(std::iter::repeat_n('x', EVENT_BYTES - text.len()));
    text
}

/// A reader that asks for the stream and then takes 1 KB a second, through a small receive
/// buffer: just enough to stay connected, never enough to drain a large event.
async fn trickle(addr: std::net::SocketAddr) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!("GET /tasks/big/events/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => tokio::time::sleep(Duration::from_secs(1)).await,
            _ => return,
        }
    }
}

/// A value of the server's `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = Response::get(addr, "/metrics", &[]).await.text().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Twenty readers that take 1 KB a second from a session of 200 one-MB events (150 stored,
/// 50 written while they read) cannot make the server hold their backlog: the bytes held for
/// clients stay within `--replay-bytes` (or one event) per stream, the server's memory grows
/// by less than 128 MiB, and a normal reader on the same session gets every event.
#[tokio::test]
async fn trickle_readers_cannot_pin_large_buffers() {
    let url = fresh_database().await;
    let db = connect(&url).await;
    insert_task(&db, "big", "InProgress").await;
    for i in 0..STORED {
        insert_event(&db, "big", "s1", "assistant", &content(i)).await;
    }
    let server = ChildServer::start(
        env!("CARGO_BIN_EXE_taskstream"),
        &url,
        &["--write-timeout", "10m", "--poll-interval", "200ms"],
    )
    .await;
    let addr = server.addr();
    let baseline = server.memory_kib("VmRSS");

    let trickles: Vec<_> = (0..TRICKLES).map(|_| tokio::spawn(trickle(addr))).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(addr, "taskstream_open_streams").await < TRICKLES as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trickle streams open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let streams = TRICKLES + 1;
    let bound = (streams * DEFAULT_REPLAY_BYTES.max(EVENT_BYTES + 100)) as f64;

    let reader = tokio::spawn(async move {
        let mut sse = Response::get(addr, "/tasks/big/events/stream", &[]).await;
        let mut seen = Vec::new();
        for i in 0..STORED + LIVE {
            let event = sse.next().await.expect("the stream goes on");
            assert!(
                event.data.starts_with(&format!("{{\"content\":\"{i:06} ")),
                "event {i} arrives in order"
            );
            assert_eq!(event.data.len(), EVENT_BYTES + 14, "event {i} whole");
            seen.push(i);
        }
        seen
    });
    for i in STORED..STORED + LIVE {
        insert_event(&db, "big", "s1", "assistant", &content(i)).await;
    }
    let mut most_held = 0.0_f64;
    while !reader.is_finished() {
        let held = metric(addr, "taskstream_client_buffer_bytes").await;
        assert!(held <= bound, "{held} bytes held for {streams} streams");
        most_held = most_held.max(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = reader.await.expect("the normal reader");
    assert_eq!(seen.len(), STORED + LIVE);
    assert!(most_held > 0.0, "the gauge counts what clients hold");

    let growth = server.memory_kib("VmHWM").saturating_sub(baseline);
    assert!(
        growth < MAX_GROWTH_KIB,
        "the server grew by {} MiB",
        growth / 1024
    );
    for trickle in trickles {
        trickle.abort();
    }
}
