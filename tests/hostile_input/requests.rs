//! A table of known-bad inputs with the status each must get, and property tests that throw
//! arbitrary paths, cursors, headers and methods at a running server. None may get a 500, a
//! panic (a dropped connection) or a hang.

use std::sync::OnceLock;

use proptest::prelude::*;
use support::http::Response;
use support::ledger::{contents, numbered};
use support::server::{TestServer, fast_config};
use tokio::runtime::Runtime;

use crate::{request, status_of};

/// One runtime and one server for every case of this file (a task `t` with events exists).
fn server() -> &'static (Runtime, TestServer) {
    static SERVER: OnceLock<(Runtime, TestServer)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = Runtime::new().expect("runtime");
        let server = runtime.block_on(async {
            let server = TestServer::start(fast_config()).await;
            server.task("t", "InProgress").await;
            server.events("t", "s1", "e", 3).await;
            server
        });
        (runtime, server)
    })
}

/// Every request of the table gets its expected status.
#[test]
fn the_bad_input_table() {
    let (runtime, server) = server();
    let stream = "/tasks/t/events/stream";
    let long_cursor = format!("YQ:{}", "1".repeat(5000));
    let long_path = format!(
        "/tasks/{}/events/stream",
        "a".repeat(taskstream::config::DEFAULT_MAX_URL_BYTES)
    );
    let huge_header = "x".repeat(20_000);
    let cases: Vec<(String, Vec<u8>, u16)> = vec![
        // Cursors: malformed, oversized, ambiguous.
        (
            "no colon".into(),
            request("GET", stream, &[("Last-Event-ID", "abc")]),
            400,
        ),
        (
            "empty seq".into(),
            request("GET", stream, &[("Last-Event-ID", "YQ:")]),
            400,
        ),
        (
            "negative seq".into(),
            request("GET", stream, &[("Last-Event-ID", "YQ:-5")]),
            400,
        ),
        (
            "fractional seq".into(),
            request("GET", stream, &[("Last-Event-ID", "YQ:1.5")]),
            400,
        ),
        (
            "seq overflow".into(),
            request(
                "GET",
                stream,
                &[("Last-Event-ID", "YQ:99999999999999999999")],
            ),
            400,
        ),
        (
            "double mark".into(),
            request("GET", stream, &[("Last-Event-ID", "YQ:1:c:c")]),
            400,
        ),
        (
            "no session with a seq".into(),
            request("GET", stream, &[("Last-Event-ID", "~:1")]),
            400,
        ),
        (
            "not base64".into(),
            request("GET", stream, &[("Last-Event-ID", "a+b/:1")]),
            400,
        ),
        (
            "oversized cursor".into(),
            request("GET", stream, &[("Last-Event-ID", &long_cursor)]),
            400,
        ),
        (
            "two cursors".into(),
            request(
                "GET",
                stream,
                &[("Last-Event-ID", "YQ:1"), ("Last-Event-ID", "YQ:2")],
            ),
            400,
        ),
        (
            "bad query escape".into(),
            request("GET", &format!("{stream}?last_event_id=%zz"), &[]),
            400,
        ),
        (
            "repeated query cursor".into(),
            request(
                "GET",
                &format!("{stream}?last_event_id=YQ:1&last_event_id=YQ:2"),
                &[],
            ),
            400,
        ),
        (
            "unknown session cursor".into(),
            request("GET", stream, &[("Last-Event-ID", "eHl6:4")]),
            200,
        ),
        // Task ids: percent-encoding, non-UTF-8, traversal.
        (
            "encoded dots".into(),
            request("GET", "/tasks/%2e%2e/events/stream", &[]),
            404,
        ),
        (
            "encoded slash".into(),
            request("GET", "/tasks/a%2Fb/events/stream", &[]),
            404,
        ),
        (
            "non-UTF-8 id".into(),
            request("GET", "/tasks/%ff%fe/events/stream", &[]),
            400,
        ),
        (
            "truncated escape".into(),
            request("GET", "/tasks/%e2%9c/events/stream", &[]),
            400,
        ),
        (
            "lone percent".into(),
            request("GET", "/tasks/%/events/stream", &[]),
            400,
        ),
        (
            "traversal".into(),
            request("GET", "/tasks/../healthz", &[]),
            404,
        ),
        (
            "deep traversal".into(),
            request("GET", "/tasks/../../../etc/passwd/events/stream", &[]),
            404,
        ),
        (
            "empty id".into(),
            request("GET", "/tasks//events/stream", &[]),
            404,
        ),
        (
            "unicode id".into(),
            request("GET", "/tasks/%E2%9C%93/events/stream", &[]),
            404,
        ),
        // Control characters, after percent-decoding: PostgreSQL cannot even bind a NUL.
        (
            "NUL id".into(),
            request("GET", "/tasks/a%00/events/stream", &[]),
            400,
        ),
        (
            "CR LF id".into(),
            request("GET", "/tasks/a%0D%0Ab/events/stream", &[]),
            400,
        ),
        (
            "escape id".into(),
            request("GET", "/tasks/%1B%5B2J/events/stream", &[]),
            400,
        ),
        ("DEL id".into(), request("GET", "/tasks/%7F", &[]), 400),
        (
            "NUL before".into(),
            request("GET", "/?before=a%00", &[]),
            400,
        ),
        (
            "tab before".into(),
            request("GET", "/?before=%09", &[]),
            400,
        ),
        // Sizes.
        (
            "very long path".into(),
            request("GET", &long_path, &[]),
            414,
        ),
        (
            "huge header".into(),
            request("GET", stream, &[("X-Filler", &huge_header)]),
            431,
        ),
        // Methods.
        (
            "POST".into(),
            request("POST", stream, &[("Content-Length", "0")]),
            405,
        ),
        (
            "PUT".into(),
            request("PUT", stream, &[("Content-Length", "0")]),
            405,
        ),
        ("DELETE".into(), request("DELETE", stream, &[]), 405),
        ("PATCH".into(), request("PATCH", "/healthz", &[]), 405),
        ("HEAD".into(), request("HEAD", stream, &[]), 405),
        (
            "OPTIONS without CORS".into(),
            request("OPTIONS", stream, &[]),
            405,
        ),
        ("made-up method".into(), request("BREW", stream, &[]), 405),
        (
            "GET on /session".into(),
            request("GET", "/session", &[]),
            405,
        ),
        // Duplicates and odd but legal requests.
        (
            "two authorizations, auth off".into(),
            request(
                "GET",
                stream,
                &[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
            ),
            200,
        ),
        (
            "POST /session, auth off".into(),
            request("POST", "/session", &[("Content-Length", "0")]),
            404,
        ),
        (
            "HTTP/1.0".into(),
            b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(),
            200,
        ),
        // Not HTTP at all.
        (
            "garbage request line".into(),
            b"\x16\x03\x01 hello\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in path".into(),
            b"GET /tasks/\0/events/stream HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ];
    runtime.block_on(async {
        for (name, bytes, expected) in cases {
            let status = status_of(server.addr(), &bytes).await;
            assert_eq!(status, Some(expected), "{name}");
        }
    });
}

/// Characters and pieces that make paths interesting.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tasks".to_owned()),
        Just("events".to_owned()),
        Just("stream".to_owned()),
        Just("t".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%".to_owned()),
        Just("%ff".to_owned()),
        Just("%E2%9C%93".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9%._~!$&'()*+,;=:@-]{0,40}",
    ]
}

/// A header value: any bytes HTTP allows in one (visible ASCII, space, tab, obs-text).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')],
        0..200,
    )
}

fn arbitrary_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("GET".to_owned()),
            Just("POST".to_owned()),
            Just("HEAD".to_owned()),
            Just("OPTIONS".to_owned()),
            Just("DELETE".to_owned()),
            "[A-Z]{1,8}",
        ],
        prop::collection::vec(path_piece(), 0..6),
        prop::option::of("[ -~]{0,120}"),
        prop::collection::vec(
            (
                prop_oneof![
                    Just("Last-Event-ID".to_owned()),
                    Just("Authorization".to_owned()),
                    Just("Cookie".to_owned()),
                    Just("Origin".to_owned()),
                    "[A-Za-z-]{1,20}",
                ],
                header_value(),
            ),
            0..5,
        ),
    )
        .prop_map(|(method, pieces, query, headers)| {
            let mut target = format!("/{}", pieces.join("/"));
            if let Some(query) = query {
                target.push('?');
                target.push_str(&query.replace(' ', "%20"));
            }
            let mut out = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
            if method == "POST" || method == "PUT" {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
            for (name, value) in headers {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary methods, paths, cursors and headers get a 2xx or 4xx (or 503), never a 500 and
    /// never a dropped connection.
    #[test]
    fn arbitrary_requests_never_fail_the_server(request in arbitrary_request()) {
        let (runtime, server) = server();
        let status = runtime.block_on(status_of(server.addr(), &request));
        let status = status.unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(&request)));
        prop_assert!(
            (200..300).contains(&status) || (400..500).contains(&status) || status == 503,
            "{status} for {:?}", String::from_utf8_lossy(&request)
        );
    }

    /// The pure request readers never panic, whatever they are given.
    #[test]
    fn request_readers_never_panic(segment in ".{0,300}", cursor in ".{0,300}", query in ".{0,300}") {
        let _ = taskstream::http::request::task_id(&segment);
        let _ = taskstream::wire::cursor::Cursor::parse(&cursor);
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&cursor) {
            headers.insert("last-event-id", value);
        }
        let _ = taskstream::http::request::resume_cursor(&headers, Some(&query));
    }
}

/// The server the property tests hit really serves streams, so their 4xx answers are verdicts
/// on the input, not a broken server refusing everything.
#[test]
fn the_shared_server_streams() {
    let (runtime, server) = server();
    runtime.block_on(async {
        let mut sse = Response::get(server.addr(), "/tasks/t/events/stream", &[]).await;
        assert_eq!(contents(&sse.take(3).await), numbered("e", 0..3));
    });
}
