//! What a JSON API request body says, read strictly and without I/O: a batch of events for
//! `POST /tasks/{id}/events`, the fields of `PUT /tasks/{id}`, and the `Idempotency-Key`
//! header. Anything malformed is an [`InputError`] that names the field.
//!
//! Every body is checked whole first ([`check_document`]): an object with a key twice (JSON
//! parsers disagree on which one wins, so a proxy and this server could read two different
//! requests) and a string with NUL (PostgreSQL's `text` cannot store it) are refused, wherever
//! they are. A non-string `content` is kept as the exact JSON text the client sent
//! ([`RawValue`]), so numbers keep their digits and a tool call's object reaches the stream as
//! it was written.

use std::collections::HashSet;
use std::fmt;

use http::HeaderMap;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::http::request::check_id;

/// Longest `Idempotency-Key` accepted.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Longest task status accepted, in bytes: statuses are short words (`InProgress`, `Done`).
pub(crate) const MAX_STATUS_LEN: usize = 64;

/// Why a body or header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputError {
    /// Malformed (`400`), with what is wrong and where.
    Malformed(String),
    /// More events than allowed in one batch (`413`).
    TooMany {
        /// Events in the batch.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Malformed(message) => f.write_str(message),
            InputError::TooMany { count, limit } => {
                write!(f, "{count} events in one batch; at most {limit}")
            }
        }
    }
}

fn malformed(message: impl Into<String>) -> InputError {
    InputError::Malformed(message.into())
}

/// One event as the client sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn<'a> {
    #[serde(borrow)]
    session: &'a RawValue,
    #[serde(borrow, rename = "type")]
    event_type: &'a RawValue,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// A checked batch: one session, each event's type and stored content, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventsIn {
    /// The session every event names.
    pub(crate) session: String,
    /// `(type, content)` of each event, content as it is stored.
    pub(crate) events: Vec<(String, String)>,
}

/// The batch of a `POST /tasks/{id}/events` body: one event object or an array of them, all
/// naming one session, at most `limit` of them.
pub(crate) fn events(body: &[u8], limit: usize) -> Result<EventsIn, InputError> {
    check_document(body)?;
    let items: Vec<(String, &RawValue)> = match first_byte(body) {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body)
                .map_err(|e| malformed(format!("the body is not a JSON array of events: {e}")))?;
            if items.len() > limit {
                return Err(InputError::TooMany {
                    count: items.len(),
                    limit,
                });
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (format!("[{i}]"), item))
                .collect()
        }
        Some(b'{') => {
            let item: &RawValue = serde_json::from_slice(body)
                .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
            vec![(String::new(), item)]
        }
        _ => {
            return Err(malformed(
                "the body must be an event object or an array of them",
            ));
        }
    };
    if items.is_empty() {
        return Err(malformed("the batch has no events"));
    }
    let mut session: Option<String> = None;
    let mut events = Vec::with_capacity(items.len());
    for (at, item) in items {
        let event: EventIn<'_> = serde_json::from_str(item.get())
            .map_err(|e| malformed(format!("event {}: {e}", place(&at))))?;
        let field = |name: &str| format!("{at}{}{name}", if at.is_empty() { "" } else { "." });
        let text = |raw: &RawValue, name: &str| {
            serde_json::from_str::<String>(raw.get())
                .map_err(|_| malformed(format!("{} must be a string", field(name))))
        };
        let event_session = text(event.session, "session")?;
        let event_type = text(event.event_type, "type")?;
        check_id(&event_session, &field("session")).map_err(|e| malformed(e.0))?;
        for (value, name) in [(&event_session, "session"), (&event_type, "type")] {
            if value.is_empty() {
                return Err(malformed(format!("{} is empty", field(name))));
            }
        }
        match &session {
            None => session = Some(event_session),
            Some(first) if *first != event_session => {
                return Err(malformed(format!(
                    "{} names another session than the batch's first event: a batch is one \
                     session's",
                    field("session")
                )));
            }
            Some(_) => {}
        }
        events.push((event_type, stored_content(event.content)?));
    }
    Ok(EventsIn {
        // `items` was not empty, so the first event set it.
        session: session.unwrap_or_default(),
        events,
    })
}

/// The text stored for a `content`: a string as it is, any other JSON value as the exact text
/// the client sent, nothing as the empty string.
fn stored_content(content: Option<&RawValue>) -> Result<String, InputError> {
    let Some(raw) = content else {
        return Ok(String::new());
    };
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).map_err(|e| malformed(format!("content: {e}")))
    } else {
        Ok(raw.get().to_owned())
    }
}

/// The fields of a `PUT /tasks/{id}` body.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskIn {
    /// The new title, if it changes.
    pub(crate) title: Option<String>,
    /// The new status, if it changes.
    pub(crate) status: Option<String>,
}

/// The fields of a `PUT /tasks/{id}` body: an object with `title` and `status`, both optional
/// strings.
pub(crate) fn task(body: &[u8]) -> Result<TaskIn, InputError> {
    check_document(body)?;
    if first_byte(body) != Some(b'{') {
        return Err(malformed("the body must be a JSON object"));
    }
    let task: TaskIn =
        serde_json::from_slice(body).map_err(|e| malformed(format!("the body: {e}")))?;
    if let Some(status) = &task.status {
        if status.is_empty() || status.len() > MAX_STATUS_LEN {
            return Err(malformed(format!(
                "status must be 1 to {MAX_STATUS_LEN} bytes"
            )));
        }
        check_id(status, "status").map_err(|e| malformed(e.0))?;
    }
    Ok(task)
}

/// The `Idempotency-Key` header: `None` when absent; 1 to 255 visible ASCII characters, once.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, InputError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed("Idempotency-Key is repeated"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(malformed(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The first byte that is not JSON whitespace.
fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn place(at: &str) -> &str {
    if at.is_empty() { "(the body)" } else { at }
}

/// Walks the whole document once: refuses a duplicate key in any object and NUL in any string
/// or key, naming where (`[2].content.args.path`). serde_json bounds the nesting depth (128)
/// and refuses invalid UTF-8 and trailing data.
fn check_document(body: &[u8]) -> Result<(), InputError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Checker { at: String::new() }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| malformed(format!("the body is not acceptable JSON: {e}")))
}

/// One value of the document being checked, and where it is.
struct Checker {
    at: String,
}

impl Checker {
    fn child(&self, part: &str) -> Checker {
        let at = if self.at.is_empty() || part.starts_with('[') {
            format!("{}{part}", self.at)
        } else {
            format!("{}.{part}", self.at)
        };
        Checker { at }
    }
}

impl<'de> DeserializeSeed<'de> for Checker {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        if text.contains('\0') {
            let at = if self.at.is_empty() {
                "the body"
            } else {
                &self.at
            };
            return Err(E::custom(format!(
                "{at} contains NUL (\\u0000), which PostgreSQL cannot store"
            )));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(self.child(&format!("[{i}]")))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(A::Error::custom(format!(
                    "a key in {} contains NUL (\\u0000)",
                    place(&self.at)
                )));
            }
            if seen.contains(&key) {
                let at = if self.at.is_empty() {
                    "the body"
                } else {
                    &self.at
                };
                return Err(A::Error::custom(format!("duplicate key {key:?} in {at}")));
            }
            map.next_value_seed(self.child(&key))?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> String {
        match events(body.as_bytes(), 1000) {
            Err(InputError::Malformed(message)) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn reads_one_event_or_an_array() {
        let one =
            events(br#"{"session":"s","type":"assistant","content":"hi"}"#, 10).expect("valid");
        assert_eq!(one.session, "s");
        assert_eq!(one.events, [("assistant".to_owned(), "hi".to_owned())]);
        let many = events(
            br#" [{"session":"s","type":"a","content":"x"},{"session":"s","type":"b"}]"#,
            10,
        )
        .expect("valid");
        assert_eq!(
            many.events,
            [
                ("a".to_owned(), "x".to_owned()),
                ("b".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn keeps_the_exact_text_of_non_string_content() {
        let body = br#"{"session":"s","type":"toolcall","content":{"tool":"f","args":{"n":1.50,"big":123456789012345678901234567890}}}"#;
        let batch = events(body, 10).expect("valid");
        assert_eq!(
            batch.events[0].1,
            r#"{"tool":"f","args":{"n":1.50,"big":123456789012345678901234567890}}"#
        );
        let batch = events(br#"{"session":"s","type":"cost","content":0.10}"#, 10).expect("ok");
        assert_eq!(batch.events[0].1, "0.10");
        let batch = events(br#"{"session":"s","type":"a","content":"\u00e9\n"}"#, 10).expect("ok");
        assert_eq!(batch.events[0].1, "é\n");
    }

    #[test]
    fn refuses_duplicate_keys_and_nul_anywhere_naming_the_place() {
        assert!(refused(r#"{"session":"s","session":"t","type":"a"}"#).contains("duplicate key"));
        let message = refused(r#"[{"session":"s","type":"a","content":{"x":1,"x":2}}]"#);
        assert!(message.contains("[0].content"), "{message}");
        let message = refused(r#"[{"session":"s","type":"a"},{"session":"s","type":"a\u0000"}]"#);
        assert!(
            message.contains("[1].type") && message.contains("NUL"),
            "{message}"
        );
        let message = refused(r#"{"session":"s","type":"a","content":{"args":["\u0000"]}}"#);
        assert!(message.contains("content.args[0]"), "{message}");
    }

    #[test]
    fn refuses_what_is_malformed_naming_the_field() {
        assert!(refused(r#"{"type":"a"}"#).contains("session"));
        assert!(refused(r#"[{"session":"s","type":"a"},{"session":"s"}]"#).contains("[1]"));
        assert!(refused(r#"{"session":"s","type":"a","extra":1}"#).contains("extra"));
        assert!(refused(r#"{"session":1,"type":"a"}"#).contains("session"));
        assert!(refused(r#"{"session":"s","type":""}"#).contains("type"));
        assert!(refused(r#"{"session":"a\nb","type":"x"}"#).contains("session"));
        assert!(
            refused(r#"[{"session":"s","type":"a"},{"session":"t","type":"a"}]"#)
                .contains("[1].session")
        );
        assert!(refused("[]").contains("no events"));
        assert!(refused("42").contains("array"));
        assert!(refused("{").contains("JSON"));
        assert!(refused(r#"{"session":"s","type":"a"} x"#).contains("JSON"));
        assert!(refused(&format!("{}{}", "[".repeat(200), "]".repeat(200))).contains("JSON"));
        assert!(matches!(
            events(b"\xff\xfe", 10),
            Err(InputError::Malformed(_))
        ));
    }

    #[test]
    fn bounds_the_batch() {
        let body = format!("[{}]", [r#"{"session":"s","type":"a"}"#; 3].join(","));
        assert_eq!(
            events(body.as_bytes(), 2),
            Err(InputError::TooMany { count: 3, limit: 2 })
        );
    }

    #[test]
    fn reads_task_fields() {
        assert_eq!(task(b"{}"), Ok(TaskIn::default()));
        let put = task(br#"{"title":"t","status":"Done"}"#).expect("valid");
        assert_eq!(put.status.as_deref(), Some("Done"));
        assert!(task(br#"{"status":""}"#).is_err());
        assert!(task(br#"{"status":"a\u0000"}"#).is_err());
        assert!(task(br#"{"title":1}"#).is_err());
        assert!(task(br#"{"colour":"red"}"#).is_err());
        assert!(task(b"[]").is_err());
    }

    #[test]
    fn reads_idempotency_keys() {
        let key = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.append(
                "idempotency-key",
                http::HeaderValue::from_bytes(value).expect("header"),
            );
            idempotency_key(&headers)
        };
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
        assert_eq!(key(b"abc-123"), Ok(Some("abc-123".to_owned())));
        assert!(key(b"has space").is_err());
        assert!(key(&[b'k'; 256]).is_err());
        assert!(key(b"\xc3\xa9").is_err());
    }
}
