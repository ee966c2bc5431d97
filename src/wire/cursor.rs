//! Cursors: the SSE `id` of every event, and what a client sends back to resume.
//!
//! A cursor names a session and a position in it: `<session>:<seq>`, where `<session>` is the
//! session id in unpadded base64url (session ids are free text, and an HTTP header must carry
//! the cursor back), so every cursor is plain ASCII. The terminal `complete` event appends the
//! completion mark `:c` to the cursor of the last event delivered. A stream that never had a
//! session names none: `~:0:c` (`~` is outside the base64url alphabet).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The session part of a cursor that names no session.
const NO_SESSION: &str = "~";

/// The suffix that marks the cursor of the terminal `complete` event.
const COMPLETE_MARK: &str = ":c";

/// Longest cursor accepted, in bytes. Session ids are not limited by the schema, but a cursor
/// longer than this cannot have come from a sane deployment and would only cost memory.
pub const MAX_CURSOR_LEN: usize = 4096;

/// A parsed resume position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The session the client last saw, `None` if it saw none.
    pub session: Option<String>,
    /// The last `seq` the client received in that session (0: none yet).
    pub seq: i64,
    /// Whether this is the cursor of a `complete` event.
    pub complete: bool,
}

/// Why a cursor was rejected. Every variant answers `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorError(&'static str);

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed cursor: {}", self.0)
    }
}

impl std::error::Error for CursorError {}

impl Cursor {
    /// Parses a cursor in exactly the format this server writes.
    pub fn parse(text: &str) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError("too long"));
        }
        let (rest, complete) = match text.strip_suffix(COMPLETE_MARK) {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let (session, seq) = rest
            .rsplit_once(':')
            .ok_or(CursorError("expected <session>:<seq>"))?;
        let seq = parse_seq(seq)?;
        let session = if session == NO_SESSION {
            if seq != 0 {
                return Err(CursorError("a position without a session"));
            }
            None
        } else {
            let bytes = URL_SAFE_NO_PAD
                .decode(session)
                .map_err(|_| CursorError("session is not base64url"))?;
            Some(String::from_utf8(bytes).map_err(|_| CursorError("session is not UTF-8"))?)
        };
        Ok(Cursor {
            session,
            seq,
            complete,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.session {
            Some(session) => write!(f, "{}{}", session_prefix(session), self.seq)?,
            None => write!(f, "{NO_SESSION}:{}", self.seq)?,
        }
        if self.complete {
            f.write_str(COMPLETE_MARK)?;
        }
        Ok(())
    }
}

/// The part of every cursor of `session` before the seq: `<base64url(session)>:`. Computed once
/// per session and reused for each of its events.
pub fn session_prefix(session: &str) -> String {
    let mut prefix = URL_SAFE_NO_PAD.encode(session);
    prefix.push(':');
    prefix
}

/// A seq: decimal digits only, no sign, fits in `i64`.
fn parse_seq(text: &str) -> Result<i64, CursorError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CursorError("seq is not a number"));
    }
    text.parse().map_err(|_| CursorError("seq is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(session: Option<&str>, seq: i64, complete: bool) -> Cursor {
        Cursor {
            session: session.map(str::to_owned),
            seq,
            complete,
        }
    }

    #[test]
    fn round_trips_and_stays_ascii() {
        for c in [
            cursor(Some("sess-1"), 7, false),
            cursor(Some("sëssion ✓ 🚀/:\n"), 0, true),
            cursor(Some(""), 3, false),
            cursor(None, 0, true),
        ] {
            let text = c.to_string();
            assert!(text.is_ascii(), "{text}");
            assert!(!text.contains(['\r', '\n', '\0', ' ']));
            assert_eq!(Cursor::parse(&text), Ok(c));
        }
    }

    #[test]
    fn writes_the_documented_format() {
        assert_eq!(cursor(Some("a"), 12, false).to_string(), "YQ:12");
        assert_eq!(cursor(Some("a"), 12, true).to_string(), "YQ:12:c");
        assert_eq!(cursor(None, 0, true).to_string(), "~:0:c");
    }

    #[test]
    fn rejects_what_it_did_not_write() {
        for bad in [
            "",
            "12",
            "YQ:",
            "YQ:-1",
            "YQ:+1",
            "YQ:1x",
            "YQ: 1",
            "YQ:99999999999999999999",
            "Y!:1",
            "YQ==:1",
            "~:3",
            "/w:1", // "/w" is not base64url; 0xff is not UTF-8 anyway
            "YQ:1:d",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Cursor::parse(&"A".repeat(MAX_CURSOR_LEN + 1)).is_err());
        // Valid base64url of bytes that are not UTF-8.
        assert!(Cursor::parse("_w:1").is_err());
    }
}
