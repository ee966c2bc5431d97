//! The test SSE parser follows the WHATWG rules, and what the encoder writes decodes back to
//! what it was given.

mod support;

use support::{SseEvent, SseParser};
use taskstream::sse;

/// BOM, CR / LF / CRLF line ends, comments, `retry`, multi-line data, a field with no colon.
#[test]
fn the_parser_follows_the_whatwg_rules() {
    let mut parser = SseParser::default();
    let events = parser
        .feed(b"\xEF\xBB\xBFretry: 5\r\n: hi\rid: 1\nevent: x\ndata: a\r\ndata:b\n\ndata\n\n");
    assert_eq!(parser.retry, Some(5));
    assert_eq!(parser.comments, vec![" hi".to_owned()]);
    assert_eq!(
        events,
        vec![
            SseEvent {
                id: "1".into(),
                event: "x".into(),
                data: "a\nb".into()
            },
            SseEvent {
                id: "1".into(),
                event: "message".into(),
                data: "".into()
            },
        ]
    );
}

/// A CR at the end of one chunk and the LF at the start of the next are one line end.
#[test]
fn a_crlf_split_across_chunks_is_one_line_end() {
    let mut parser = SseParser::default();
    assert!(parser.feed(b"data: a\r").is_empty());
    let events = parser.feed(b"\n\r\n");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "a");
}

/// Content with newlines, quotes, non-ASCII and 1 MB of text round-trips through the encoder
/// and a conformant parser, fed in awkward chunk sizes.
#[test]
fn encoded_events_decode_back() {
    let big = "0123456789abcdef".repeat(65_536);
    let cases = [
        ("YQ:1", "assistant", "{\"content\":\"line one\\nline two\"}"),
        ("YQ:2", "x", "multi\nline\r\ndata\rhere"),
        (
            "YQ:3",
            "q",
            "quotes \" and \\ backslash, ünïcode ✓, emoji 🚀",
        ),
        ("YQ:4", "big", big.as_str()),
        ("YQ:5", "empty", ""),
    ];
    let mut wire = Vec::new();
    for (id, name, data) in cases {
        wire.extend_from_slice(&sse::event(id, name, data));
    }
    for chunk in [1, 7, 4096, wire.len()] {
        let mut parser = SseParser::default();
        let events: Vec<SseEvent> = wire.chunks(chunk).flat_map(|c| parser.feed(c)).collect();
        assert_eq!(events.len(), cases.len(), "chunk size {chunk}");
        for ((id, name, data), event) in cases.iter().zip(&events) {
            assert_eq!(event.id, *id);
            assert_eq!(event.event, *name);
            // SSE normalises every line end in data to LF.
            assert_eq!(event.data, data.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }
}
