//! What every benchmark event carries, from the writer to the client: the wall-clock time its
//! insert was issued and its index in its session, stored as the content
//! `{"t":<unix nanos>,"n":<index>}` and read back out of a frame's `data`.
//!
//! The reading side is deliberately not a JSON parser: at saturation the generator reads a
//! million frames a second on the same two cores as the server, so the two numbers are found
//! with a substring search, without allocating per frame.

use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem;

/// The marker before the write timestamp in a frame's `data`: the writer's content is the JSON
/// `{"t":<unix nanos>,"n":<index>}`, which arrives escaped inside `{"content":"..."}`.
const T_KEY: &[u8] = br#"t\":"#;

/// The marker before the event's index in its session.
const N_KEY: &[u8] = br#"n\":"#;

/// One event written by the benchmark's writer, as a client received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchEvent {
    /// When the writer issued the insert, in Unix nanoseconds.
    pub written_at_ns: u64,
    /// The event's index in its session (0, 1, 2, … in commit order).
    pub index: u64,
}

/// The writer's timestamp and index in a data line, if both are there.
pub fn parse(data: &[u8]) -> Option<BenchEvent> {
    Some(BenchEvent {
        written_at_ns: number_after(data, T_KEY)?,
        index: number_after(data, N_KEY)?,
    })
}

/// The task a multi-task frame's data names: `{"task":"<id>","data":…}` (the benchmark's task ids
/// need no JSON escapes).
pub fn task(data: &[u8]) -> Option<&[u8]> {
    let data = data.strip_prefix(b" ").unwrap_or(data);
    let rest = data.strip_prefix(br#"{"task":""#)?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

fn number_after(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let at = memmem::find(haystack, key)? + key.len();
    let digits = &haystack[at..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    digits[..len].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The content the writer stores for event `index` written at `written_at_ns`.
pub fn content(written_at_ns: u64, index: u64) -> String {
    format!(r#"{{"t":{written_at_ns},"n":{index}}}"#)
}

/// The index of a stored content (as the table holds it, unescaped), if it is the writer's.
pub fn parse_content(content: &str) -> Option<u64> {
    number_after(content.as_bytes(), br#""n":"#)
}

/// The wall clock in Unix nanoseconds: the writer stamps events with it and the client reads
/// it on arrival, so latency is the difference of the two.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_round_trips_through_the_servers_json_escaping() {
        let data = serde_json::json!({ "content": content(42, 9) }).to_string();
        assert_eq!(
            parse(data.as_bytes()),
            Some(BenchEvent {
                written_at_ns: 42,
                index: 9
            })
        );
    }

    #[test]
    fn the_stored_content_gives_its_index_back() {
        assert_eq!(parse_content(&content(42, 9)), Some(9));
        assert_eq!(parse_content("hello"), None);
    }

    #[test]
    fn a_missing_or_overlong_number_is_no_benchmark_event() {
        assert_eq!(parse(br#"{"content":"{\"t\":,\"n\":1}"}"#), None);
        assert_eq!(number_after(br#"t\":99999999999999999999"#, T_KEY), None);
    }
}
