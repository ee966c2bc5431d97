//! The Server-Sent Events wire format: the one place where frames are written.
//!
//! Pure functions from values to bytes. Whatever it is given, nothing here writes a CR, LF or
//! NUL except as a line end: a CR or LF inside an `id` or `event` value would end the field
//! early and let stored text forge fields (`data: …`, `id: …`), and a bare CR ends an SSE line
//! just like LF does. Callers already pass clean values (ASCII cursors, sanitised event names,
//! compact JSON); the encoder enforces it anyway, so injection is impossible by construction.

use bytes::{BufMut, Bytes, BytesMut};

/// The comment sent during silence, so proxies keep the connection and a vanished client is
/// noticed by a failed write.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Appends one event frame (`id`, `event`, `data` lines and the blank line that dispatches it).
///
/// `data` is split at line ends (CR, LF or CRLF) into several `data:` lines, which a conformant
/// parser joins back with LF. In `id` and `event`, CR, LF and NUL become `_`; in `data`, NUL
/// becomes U+FFFD.
pub fn write_event(out: &mut BytesMut, id: &str, event: &str, data: &str) {
    out.reserve(id.len() + event.len() + data.len() + 24);
    write_id(out, id);
    write_body(out, event, data);
}

/// Appends the `id` line of a frame whose body ([`write_body`]) is shared with other clients:
/// a multi-task stream writes its own cursor before the body every subscriber shares.
pub fn write_id(out: &mut BytesMut, id: &str) {
    write_field(out, "id", id);
}

/// Appends the `event` and `data` lines and the blank line that dispatches the frame.
pub fn write_body(out: &mut BytesMut, event: &str, data: &str) {
    write_field(out, "event", event);
    write_data(out, data);
    out.put_u8(b'\n');
}

/// One event frame as its own buffer.
pub fn event(id: &str, event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::new();
    write_event(&mut out, id, event, data);
    out.freeze()
}

/// An event frame without an `id` line, for streams that resume by taking a new snapshot
/// rather than by cursor (an empty `id:` would reset the client's last event id).
pub fn event_without_id(event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::new();
    write_body(&mut out, event, data);
    out.freeze()
}

/// The `retry:` hint that tells EventSource how long to wait before reconnecting. Sent first,
/// so the response headers and `onopen` arrive at once.
pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

fn write_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        for ch in value.chars() {
            push_char(out, if is_line_break(ch) { '_' } else { ch });
        }
    } else {
        out.put_slice(value.as_bytes());
    }
    out.put_u8(b'\n');
}

fn write_data(out: &mut BytesMut, data: &str) {
    let mut rest = data;
    loop {
        match rest.find(['\r', '\n']) {
            None => return write_data_line(out, rest),
            Some(at) => {
                write_data_line(out, &rest[..at]);
                let line_end = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + line_end..];
            }
        }
    }
}

fn write_data_line(out: &mut BytesMut, line: &str) {
    out.put_slice(b"data: ");
    if line.as_bytes().contains(&0) {
        for ch in line.chars() {
            push_char(out, if ch == '\0' { '\u{FFFD}' } else { ch });
        }
    } else {
        out.put_slice(line.as_bytes());
    }
    out.put_u8(b'\n');
}

fn is_line_break(ch: char) -> bool {
    matches!(ch, '\r' | '\n' | '\0')
}

fn push_char(out: &mut BytesMut, ch: char) {
    let mut utf8 = [0u8; 4];
    out.put_slice(ch.encode_utf8(&mut utf8).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: &str, name: &str, data: &str) -> String {
        String::from_utf8(event(id, name, data).to_vec()).expect("the encoder writes UTF-8")
    }

    #[test]
    fn writes_an_event_byte_for_byte() {
        assert_eq!(
            frame("YQ:1", "assistant", r#"{"content":"hi"}"#),
            "id: YQ:1\nevent: assistant\ndata: {\"content\":\"hi\"}\n\n"
        );
    }

    #[test]
    fn splits_data_at_every_kind_of_line_end() {
        assert_eq!(
            frame("1", "x", "a\nb\r\nc\rd"),
            "id: 1\nevent: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(frame("1", "x", ""), "id: 1\nevent: x\ndata: \n\n");
        assert_eq!(frame("1", "x", "\n"), "id: 1\nevent: x\ndata: \ndata: \n\n");
        assert_eq!(
            frame("1", "x", "a\r\n\r\nb"),
            "id: 1\nevent: x\ndata: a\ndata: \ndata: b\n\n"
        );
    }

    #[test]
    fn hostile_id_and_event_cannot_forge_fields() {
        let out = frame("1\ndata: x\r", "a\r\nevent: evil\0", "ok");
        assert_eq!(out, "id: 1_data: x_\nevent: a__event: evil_\ndata: ok\n\n");
    }

    #[test]
    fn nul_in_data_is_replaced() {
        assert_eq!(
            frame("1", "x", "a\0b"),
            "id: 1\nevent: x\ndata: a\u{FFFD}b\n\n"
        );
    }

    #[test]
    fn nothing_written_contains_cr_or_nul_and_lf_only_ends_lines() {
        let hostile = "x\r\n\ry\0\n\u{2028}z\u{85}";
        let bytes = event(hostile, hostile, hostile);
        assert!(!bytes.contains(&b'\r'));
        assert!(!bytes.contains(&0));
        for line in bytes.split(|b| *b == b'\n') {
            assert!(
                line.is_empty()
                    || line.starts_with(b"id: ")
                    || line.starts_with(b"event: ")
                    || line.starts_with(b"data: "),
                "unexpected line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn non_ascii_and_long_values_pass_through() {
        let big = "ü✓🚀".repeat(100_000);
        let out = frame("1", "x", &big);
        assert_eq!(out, format!("id: 1\nevent: x\ndata: {big}\n\n"));
    }

    #[test]
    fn an_event_without_an_id_has_no_id_line() {
        assert_eq!(
            &event_without_id("task", "{}")[..],
            b"event: task\ndata: {}\n\n"
        );
    }

    #[test]
    fn retry_and_keep_alive() {
        assert_eq!(&retry(1000)[..], b"retry: 1000\n\n");
        assert_eq!(KEEP_ALIVE, b": keep-alive\n\n");
    }
}
