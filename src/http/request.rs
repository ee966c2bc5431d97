//! Reading what a request asks for: the task id in its path, the cursor it resumes from, and the
//! page of the task list it wants. Pure functions over strings and headers; anything malformed
//! is a [`BadRequest`] (`400`).

use std::fmt;

use http::HeaderMap;

use crate::wire::cursor::Cursor;
use crate::wire::multi_cursor::MultiCursor;

/// Longest task id accepted, in bytes (after percent-decoding).
pub(crate) const MAX_TASK_ID_LEN: usize = 1024;

/// The query parameter that carries a cursor on a first request.
const CURSOR_PARAM: &str = "last_event_id";

/// Tasks on one page of `GET /` unless `?limit=` asks for another number.
pub(crate) const DEFAULT_PAGE_SIZE: i64 = 50;

/// Most tasks one page of `GET /` shows, whatever `?limit=` asks: the index never reads the
/// whole table at once.
pub const MAX_PAGE_SIZE: i64 = 200;

/// Which page of the task list `GET /` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListPage {
    /// Tasks on the page, from 1 to [`MAX_PAGE_SIZE`].
    pub(crate) limit: i64,
    /// The task the previous page ended with; only older tasks follow.
    pub(crate) before: Option<String>,
}

/// Why a request was refused with `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The task id of a path segment: percent-decoded, UTF-8, at most [`MAX_TASK_ID_LEN`] bytes,
/// without control characters.
pub fn task_id(segment: &str) -> Result<String, BadRequest> {
    let id =
        percent_decode(segment).ok_or_else(|| bad("task id is not valid percent-encoded UTF-8"))?;
    check_id(&id, "task id")?;
    Ok(id)
}

/// Refuses an id that no task can have: longer than [`MAX_TASK_ID_LEN`] bytes, or with a C0
/// control character or DEL. PostgreSQL cannot store NUL in `text` at all (a query that binds
/// one fails as a whole, for every task in a batch), and CR or LF in an id would forge log lines
/// and headers; no writer has a reason to use any of them. Refused here, such an id never
/// reaches the database or the hub.
pub(crate) fn check_id(id: &str, what: &str) -> Result<(), BadRequest> {
    if id.len() > MAX_TASK_ID_LEN {
        return Err(bad(&format!("{what} is too long")));
    }
    if id.chars().any(|c| c.is_ascii_control()) {
        return Err(bad(&format!("{what} contains a control character")));
    }
    Ok(())
}

/// The cursor to resume from: the `Last-Event-ID` header (what EventSource sends on reconnect)
/// or else the `last_event_id` query parameter. The header wins, because a browser reconnects
/// to the original URL, query included, with a newer header. Empty means no cursor. Sent twice
/// (either way), it is ambiguous and refused.
pub fn resume_cursor(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Cursor>, BadRequest> {
    let Some(text) = resume_text(headers, query)? else {
        return Ok(None);
    };
    Cursor::parse(&text)
        .map(Some)
        .map_err(|e| bad(&e.to_string()))
}

/// The cursor of a multi-task stream, from the same places as [`resume_cursor`]'s, with at
/// most `max_tasks` entries.
pub(crate) fn resume_multi_cursor(
    headers: &HeaderMap,
    query: Option<&str>,
    max_tasks: usize,
) -> Result<Option<MultiCursor>, BadRequest> {
    let Some(text) = resume_text(headers, query)? else {
        return Ok(None);
    };
    MultiCursor::parse(&text, max_tasks)
        .map(Some)
        .map_err(|e| bad(&e.to_string()))
}

/// The text of the cursor to resume from (see [`resume_cursor`]); `None` when there is none.
fn resume_text(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, BadRequest> {
    let mut values = headers.get_all("last-event-id").iter();
    let header = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(bad("Last-Event-ID is repeated")),
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| bad("Last-Event-ID is not ASCII"))?
                .trim()
                .to_owned(),
        ),
        (None, _) => None,
    };
    let text = match header {
        Some(text) => text,
        None => match query_param(query, CURSOR_PARAM)? {
            Some(text) => text,
            None => return Ok(None),
        },
    };
    Ok(Some(text).filter(|text| !text.is_empty()))
}

/// The tasks of a multi-task stream: every `task=` of the query, percent-decoded and checked
/// like a path's task id, duplicates counted once (first place kept), from 1 to `max`.
pub(crate) fn task_list(query: Option<&str>, max: usize) -> Result<Vec<String>, BadRequest> {
    let mut tasks: Vec<String> = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(value) = pair.strip_prefix("task=") else {
            continue;
        };
        let id =
            percent_decode(value).ok_or_else(|| bad("task is not valid percent-encoded UTF-8"))?;
        check_id(&id, "task id")?;
        if !tasks.contains(&id) {
            if tasks.len() == max {
                return Err(bad(&format!("at most {max} tasks per stream")));
            }
            tasks.push(id);
        }
    }
    if tasks.is_empty() {
        return Err(bad("name at least one task: ?task=<id>&task=<id>"));
    }
    Ok(tasks)
}

/// The page of the task list asked for by `?limit=` (capped at [`MAX_PAGE_SIZE`]) and
/// `?before=` (a task id).
pub(crate) fn list_page(query: Option<&str>) -> Result<ListPage, BadRequest> {
    let limit = match query_param(query, "limit")? {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_PAGE_SIZE),
            _ => return Err(bad("limit must be a positive whole number")),
        },
    };
    let before = match query_param(query, "before")? {
        Some(id) if !id.is_empty() => {
            check_id(&id, "before")?;
            Some(id)
        }
        _ => None,
    };
    Ok(ListPage { limit, before })
}

/// The percent-decoded value of query parameter `name`, refusing it twice.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, BadRequest> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            continue;
        }
        if found.is_some() {
            return Err(bad(&format!("{name} is repeated")));
        }
        let value = percent_decode(value)
            .ok_or_else(|| bad(&format!("{name} is not valid percent-encoded UTF-8")))?;
        found = Some(value);
    }
    Ok(found)
}

/// Decodes `%XX` escapes; `None` for a broken escape (a `%` not followed by two hex digits,
/// which lenient decoders pass through as text) or a result that is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &byte)| {
        byte != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode(bytes)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

fn bad(message: &str) -> BadRequest {
    BadRequest(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                "last-event-id",
                HeaderValue::from_bytes(value).expect("test header"),
            );
        }
        map
    }

    #[test]
    fn decodes_task_ids() {
        assert_eq!(task_id("task-1"), Ok("task-1".to_owned()));
        assert_eq!(task_id("a%2Fb%20%E2%9C%93"), Ok("a/b ✓".to_owned()));
        assert!(task_id("%").is_err());
        assert!(task_id("%zz").is_err());
        assert!(task_id("%ff").is_err()); // not UTF-8
        assert!(task_id(&"x".repeat(MAX_TASK_ID_LEN + 1)).is_err());
    }

    #[test]
    fn refuses_control_characters_after_decoding() {
        for segment in ["a%00", "%0A", "a%0D%0Ab", "%09", "%1B[31m", "x%7F", "%1f"] {
            let refused = task_id(segment).expect_err(segment);
            assert!(
                refused.0.contains("control character"),
                "{segment}: {refused}"
            );
        }
        // Not control characters: space, non-ASCII, and C1 code points (valid text, escaped in
        // logs).
        for segment in ["a%20b", "%C2%85", "%E2%80%A8", "%C3%A9"] {
            assert!(task_id(segment).is_ok(), "{segment}");
        }
        assert!(list_page(Some("before=a%00")).is_err());
        assert!(list_page(Some("before=a%0Ab")).is_err());
        assert!(list_page(Some("before=a%7F")).is_err());
    }

    #[test]
    fn header_wins_over_query() {
        let cursor =
            resume_cursor(&headers(&[b"YQ:2"]), Some("last_event_id=YQ:1")).expect("valid");
        assert_eq!(cursor.map(|c| c.seq), Some(2));
        let cursor =
            resume_cursor(&HeaderMap::new(), Some("x=1&last_event_id=YQ%3A1")).expect("valid");
        assert_eq!(cursor.map(|c| c.seq), Some(1));
        assert_eq!(resume_cursor(&HeaderMap::new(), None), Ok(None));
        assert_eq!(
            resume_cursor(&headers(&[b""]), Some("last_event_id=")),
            Ok(None)
        );
    }

    #[test]
    fn reads_task_lists() {
        let list = |query: &str| task_list(Some(query), 3);
        assert_eq!(
            list("task=a&x=1&task=b%20c&task=a"),
            Ok(vec!["a".to_owned(), "b c".to_owned()])
        );
        assert!(list("task=a&task=b&task=c&task=d").is_err(), "four tasks");
        assert!(list("task=a&task=b&task=c&task=a&task=b").is_ok());
        assert!(list("").is_err());
        assert!(task_list(None, 3).is_err());
        assert!(list("task=a%0A").is_err());
        assert!(list("task=%zz").is_err());
        assert!(
            list("task=").is_ok(),
            "an empty id is an id (404 if no task has it)"
        );
    }

    #[test]
    fn reads_list_pages() {
        let page = |query: &str| list_page(Some(query));
        assert_eq!(
            list_page(None),
            Ok(ListPage {
                limit: DEFAULT_PAGE_SIZE,
                before: None
            })
        );
        assert_eq!(page("limit=5&before=a%20b").map(|p| p.limit), Ok(5));
        assert_eq!(
            page("limit=5&before=a%20b").map(|p| p.before),
            Ok(Some("a b".to_owned()))
        );
        assert_eq!(page("limit=100000").map(|p| p.limit), Ok(MAX_PAGE_SIZE));
        assert_eq!(page("before=").map(|p| p.before), Ok(None));
        assert!(page("limit=0").is_err());
        assert!(page("limit=-3").is_err());
        assert!(page("limit=ten").is_err());
        assert!(page("limit=1&limit=2").is_err());
        assert!(page(&format!("before={}", "x".repeat(MAX_TASK_ID_LEN + 1))).is_err());
    }

    #[test]
    fn refuses_ambiguous_or_malformed_cursors() {
        assert!(resume_cursor(&headers(&[b"YQ:1", b"YQ:2"]), None).is_err());
        assert!(
            resume_cursor(
                &HeaderMap::new(),
                Some("last_event_id=YQ:1&last_event_id=YQ:2")
            )
            .is_err()
        );
        assert!(resume_cursor(&headers(&[b"\xff"]), None).is_err());
        assert!(resume_cursor(&headers(&[b"nonsense"]), None).is_err());
        assert!(resume_cursor(&HeaderMap::new(), Some("last_event_id=%")).is_err());
    }
}
