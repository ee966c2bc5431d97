//! How a stored `agent_events` row becomes an SSE event: its name and its JSON data (the
//! mapping table in the README's API section). Pure; `tests/event_mapping.rs` runs every
//! vector of `tests/vectors/event_mapping.json` against it.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::wire::sse;

/// Event names that EventSource or this protocol give a meaning of their own. A stored row
/// with one of them is renamed `agent_…`, so that only the server's own terminal event is
/// `complete` and a row can never pose as `open` or as an unnamed `message`.
const RESERVED_NAMES: [&str; 3] = ["complete", "open", "message"];

/// The SSE event name of a stored `event_type`: ASCII letters lower-cased, every character
/// outside `[a-z0-9_.-]` replaced by one `_`, reserved names prefixed with `agent_`.
///
/// An empty type would reach a browser as an unnamed event, which EventSource dispatches as
/// `message`; it is therefore named `agent_message`.
pub fn event_name(event_type: &str) -> String {
    let name: String = event_type
        .chars()
        .map(|ch| match ch.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '.' | '-') => c,
            _ => '_',
        })
        .collect();
    if name.is_empty() {
        "agent_message".to_owned()
    } else if RESERVED_NAMES.contains(&name.as_str()) {
        format!("agent_{name}")
    } else {
        name
    }
}

/// The JSON data of a stored row, shaped by its lower-cased type.
pub fn event_data(event_type: &str, content: &str) -> Value {
    match event_type.to_ascii_lowercase().as_str() {
        "assistant" => json!({ "content": content }),
        "toolcall" => tool_call(content),
        "toolresult" => tool_result(content),
        "cost" => json!({ "cost": content }),
        "error" => json!({ "error": content }),
        "complete" => json!({}),
        _ => json!({ "content": content }),
    }
}

/// The whole SSE frame of a stored row, carrying `cursor` as its id.
pub fn frame(cursor: &str, event_type: &str, content: &str) -> Bytes {
    let mut out = BytesMut::new();
    write_frame(&mut out, cursor, event_type, content);
    out.freeze()
}

/// Appends the SSE frame of a stored row to `out`.
pub(crate) fn write_frame(out: &mut BytesMut, cursor: &str, event_type: &str, content: &str) {
    // Compact JSON escapes every control character, so the data is always one line.
    let data = event_data(event_type, content).to_string();
    sse::write_event(out, cursor, &event_name(event_type), &data);
}

/// `toolcall`: a JSON object with a string `tool` is passed through (`args` defaults to `{}`);
/// any other content is `name: args`, split at the first colon.
fn tool_call(content: &str) -> Value {
    if let Some(mut object) = json_object(content)
        && let Some(Value::String(tool)) = object.remove("tool")
    {
        let args = object.remove("args").unwrap_or_else(|| json!({}));
        return json!({ "tool": tool, "args": args });
    }
    let (tool, args) = content.split_once(':').unwrap_or((content, ""));
    json!({ "tool": tool.trim(), "args": { "data": args.trim() } })
}

/// `toolresult`: a JSON object with an `output` field gives `tool` (default `"unknown"`),
/// `success` (default `true`) and `output`; any other content is the output itself.
fn tool_result(content: &str) -> Value {
    if let Some(mut object) = json_object(content)
        && let Some(output) = object.remove("output")
    {
        let tool = match object.remove("tool") {
            Some(Value::String(tool)) => tool,
            _ => "unknown".to_owned(),
        };
        let success = object
            .get("success")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        return json!({ "tool": tool, "success": success, "output": output });
    }
    json!({ "tool": "unknown", "success": true, "output": content })
}

/// The content parsed as a JSON object, if it is one (other JSON values are plain text here).
fn json_object(content: &str) -> Option<Map<String, Value>> {
    if !content.trim_start().starts_with('{') {
        return None;
    }
    match serde_json::from_str(content) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_type_is_not_an_unnamed_message() {
        assert_eq!(event_name(""), "agent_message");
    }

    #[test]
    fn names_are_sanitised_per_character() {
        assert_eq!(event_name("Tool Call"), "tool_call");
        assert_eq!(event_name("a\r\nb"), "a__b");
        assert_eq!(event_name("x.y-z_0"), "x.y-z_0");
        assert_eq!(event_name("OPEN"), "agent_open");
    }

    #[test]
    fn a_frame_has_the_cursor_name_and_compact_data() {
        let bytes = frame("YQ:3", "Error", "multi\nline");
        assert_eq!(
            &bytes[..],
            b"id: YQ:3\nevent: error\ndata: {\"error\":\"multi\\nline\"}\n\n"
        );
    }

    #[test]
    fn tool_result_keeps_non_string_output() {
        assert_eq!(
            event_data("toolresult", r#"{"output": {"lines": 3}, "success": "no"}"#),
            json!({ "tool": "unknown", "success": true, "output": { "lines": 3 } })
        );
    }
}
