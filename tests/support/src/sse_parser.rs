//! A Server-Sent Events parser that follows the WHATWG rules, so that tests check the stream
//! the way a browser reads it: CR, LF and CRLF line ends, comments, multi-line data, `id`
//! with NUL ignored, `retry` digits only, a leading BOM dropped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event ID at dispatch time.
    pub id: String,
    /// The event type (`message` when none was given).
    pub event: String,
    /// The data, lines joined with LF.
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data {:?} is not JSON: {e}", self.data))
    }
}

/// An incremental parser: feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: String,
    event: String,
    /// The last event ID (what EventSource would send as `Last-Event-ID`).
    pub last_id: String,
    /// The last `retry` value seen.
    pub retry: Option<u64>,
    /// Comment lines seen (without the colon).
    pub comments: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue; // the LF of a CRLF
                }
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                b'\n' => self.end_line(&mut out),
                _ => self.line.push(byte),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{FEFF}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            if self.data.is_empty() {
                self.event.clear();
                return;
            }
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            let event = std::mem::take(&mut self.event);
            out.push(SseEvent {
                id: self.last_id.clone(),
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            });
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.comments.push(comment.to_owned());
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }
}
