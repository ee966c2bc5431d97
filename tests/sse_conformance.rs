//! The test SSE parser follows the WHATWG rules, and what the encoder writes decodes back to
//! what it was given.

use proptest::prelude::*;
use support::sse_parser::{SseEvent, SseParser};
use taskstream::wire::cursor::Cursor;
use taskstream::wire::{event, sse};

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

/// Parses a whole frame, returning its events and the parser (for what else it saw).
fn parse_all(bytes: &[u8]) -> (Vec<SseEvent>, SseParser) {
    let mut parser = SseParser::default();
    let events = parser.feed(bytes);
    (events, parser)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Any stored row (any type, any content, any session id) becomes exactly one event that a
    /// conformant parser decodes to the specified name, the specified data and a cursor naming
    /// the row — and to nothing else (no retry, no comment, no second event).
    #[test]
    fn any_row_decodes_to_exactly_its_event(
        event_type in any::<String>(),
        content in any::<String>(),
        session in any::<String>(),
        seq in 1i64..i64::MAX,
    ) {
        let id = Cursor { session: Some(session.clone()), seq, complete: false }.to_string();
        let frame = event::frame(&id, &event_type, &content);
        prop_assert!(!frame.contains(&b'\r') && !frame.contains(&0));
        let (events, parser) = parse_all(&frame);
        prop_assert_eq!(events.len(), 1);
        let decoded = &events[0];
        prop_assert_eq!(&decoded.event, &event::event_name(&event_type));
        let data: serde_json::Value = serde_json::from_str(&decoded.data).expect("JSON data");
        prop_assert_eq!(data, event::event_data(&event_type, &content));
        let cursor = Cursor::parse(&decoded.id).expect("a cursor");
        prop_assert_eq!(cursor.session.as_deref(), Some(session.as_str()));
        prop_assert_eq!(cursor.seq, seq);
        prop_assert!(parser.retry.is_none() && parser.comments.is_empty());
    }

    /// The encoder itself, given any id, name and data: one event, never an extra field; id and
    /// name come back with CR, LF and NUL replaced, data with its line ends normalised to LF.
    #[test]
    fn any_values_encode_to_one_event_and_nothing_else(
        id in any::<String>(),
        name in any::<String>(),
        data in any::<String>(),
    ) {
        let frame = sse::event(&id, &name, &data);
        prop_assert!(!frame.contains(&b'\r') && !frame.contains(&0));
        let (events, parser) = parse_all(&frame);
        prop_assert_eq!(events.len(), 1);
        let clean = |s: &str| s.replace(['\r', '\n', '\0'], "_");
        prop_assert_eq!(&events[0].id, &clean(&id));
        let expected_name = clean(&name);
        let expected_name = if expected_name.is_empty() { "message".to_owned() } else { expected_name };
        prop_assert_eq!(&events[0].event, &expected_name);
        let expected_data = data.replace("\r\n", "\n").replace('\r', "\n").replace('\0', "\u{FFFD}");
        prop_assert_eq!(&events[0].data, &expected_data);
        prop_assert!(parser.retry.is_none() && parser.comments.is_empty());
    }
}
