//! How a stored `agent_events` row becomes an SSE event: its name and its JSON data (the
//! mapping table in the README's API section). Pure; `tests/event_mapping.rs` runs every
//! vector of `tests/vectors/event_mapping.json` against it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::wire::sse;

/// Event names that EventSource or this protocol give a meaning of their own. A stored row
/// with one of them is renamed `agent_…`, so that only the server's own terminal event is
/// `complete` and a row can never pose as `open` or as an unnamed `message`.
/// `task_complete` is the multi-task stream's own end of one task.
const RESERVED_NAMES: [&str; 4] = ["complete", "open", "message", "task_complete"];

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

/// A stored row's single-task frame, with where its name and data are in it, so that the body
/// of the row's multi-task frame ([`Encoded::tagged`]) is derived from it without the row.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The whole single-task frame.
    pub(crate) frame: Bytes,
    name: Range<usize>,
    data: Range<usize>,
}

/// Encodes a stored row's single-task frame, carrying `cursor` as its id.
pub(crate) fn encode(cursor: &str, event_type: &str, content: &str) -> Encoded {
    let name = event_name(event_type);
    let data = event_data(event_type, content).to_string();
    // The frame's length, give or take the field names: one allocation per event.
    let mut out = BytesMut::with_capacity(cursor.len() + name.len() + data.len() + 24);
    sse::write_id(&mut out, cursor);
    let body = out.len();
    sse::write_body(&mut out, &name, &data);
    // The name is `[a-z0-9_.-]` and the data compact JSON on one line, so both are written
    // as they are: `event: <name>\ndata: <data>\n\n`.
    let name_at = body + "event: ".len();
    let data_at = name_at + name.len() + "\ndata: ".len();
    Encoded {
        name: name_at..name_at + name.len(),
        data: data_at..out.len() - 2,
        frame: out.freeze(),
    }
}

impl Encoded {
    /// The `event:`/`data:` body of this row's frame in a multi-task stream, for the task whose
    /// id is `task_json` (a JSON string). Computed once per event and shared by every
    /// multi-task subscriber, each of which writes only its own `id:` line before it.
    pub(crate) fn tagged(&self, task_json: &str) -> Bytes {
        let name = String::from_utf8_lossy(&self.frame[self.name.clone()]);
        let data = tagged_data(
            task_json,
            &String::from_utf8_lossy(&self.frame[self.data.clone()]),
        );
        let mut out = BytesMut::with_capacity(name.len() + data.len() + 20);
        sse::write_body(&mut out, &name, &data);
        out.freeze()
    }
}

/// Appends a stored row's multi-task frame: `id: <cursor>`, the single-task event name, and
/// `{"task": <task>, "data": <the single-task data>}`.
pub(crate) fn write_tagged(
    out: &mut BytesMut,
    cursor: &str,
    task_json: &str,
    event_type: &str,
    content: &str,
) {
    let data = event_data(event_type, content).to_string();
    sse::write_id(out, cursor);
    sse::write_body(out, &event_name(event_type), &tagged_data(task_json, &data));
}

/// The data of a multi-task frame. The label is a field of its own beside the row's data, so
/// no stored content can pose as it.
fn tagged_data(task_json: &str, data: &str) -> String {
    let mut out = String::with_capacity(task_json.len() + data.len() + 20);
    out.push_str("{\"task\":");
    out.push_str(task_json);
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

/// A task id as a JSON string, the label of its frames in a multi-task stream.
pub(crate) fn task_json(task_id: &str) -> String {
    Value::from(task_id).to_string()
}

/// The data of `task_complete`: the task and its status (`null`: deleted).
pub(crate) fn task_complete_data(task_id: &str, status: Option<&str>) -> String {
    json!({ "task": task_id, "status": status }).to_string()
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
    fn the_tagged_body_wraps_the_single_task_data_under_the_same_name() {
        let encoded = encode("YQ:3", "Task_Complete", "multi\nline ✓");
        assert_eq!(
            &encoded.frame[..],
            "id: YQ:3\nevent: agent_task_complete\ndata: {\"content\":\"multi\\nline ✓\"}\n\n"
                .as_bytes()
        );
        let tagged = encoded.tagged(&task_json("t\"1"));
        assert_eq!(
            &tagged[..],
            "event: agent_task_complete\ndata: {\"task\":\"t\\\"1\",\"data\":{\"content\":\"multi\\nline ✓\"}}\n\n"
                .as_bytes()
        );
        let mut written = BytesMut::new();
        write_tagged(
            &mut written,
            "m00",
            &task_json("t\"1"),
            "Task_Complete",
            "multi\nline ✓",
        );
        assert_eq!(&written[..], [&b"id: m00\n"[..], &tagged[..]].concat());
    }

    #[test]
    fn tool_result_keeps_non_string_output() {
        assert_eq!(
            event_data("toolresult", r#"{"output": {"lines": 3}, "success": "no"}"#),
            json!({ "tool": "unknown", "success": true, "output": { "lines": 3 } })
        );
    }
}
