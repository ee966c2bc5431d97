//! The binary's logs, on standard error: human-readable lines or JSON objects, one per event.
//!
//! In the text format every field value is written with its control characters escaped
//! (`\n`, `\r`, `\u{1b}`, …): ids and database messages come from clients and writers, and a CR
//! or LF in one would otherwise start a forged line, an escape sequence would drive the reader's
//! terminal. (JSON escapes them by itself.) Colours are used only when standard error is a
//! terminal, never in a file or the journal.

use std::fmt::{self, Write};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

use crate::config::{DEFAULT_LOG_FILTER, LogFormat};

/// Starts logging to standard error with `filter` (`tracing` EnvFilter syntax; a bad one is
/// reported and the default used) in `format`.
pub fn init(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("taskstream: ignoring log filter {filter:?}: {error}");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The text format's fields: `message` first as it is, then `name=value`, every value escaped.
#[derive(Debug, Clone, Copy)]
pub struct EscapedFields;

impl<'w> MakeVisitor<Writer<'w>> for EscapedFields {
    type Visitor = EscapedVisitor<'w>;

    fn make_visitor(&self, writer: Writer<'w>) -> EscapedVisitor<'w> {
        EscapedVisitor {
            writer,
            result: Ok(()),
            first: true,
        }
    }
}

/// Writes one event's fields for [`EscapedFields`].
#[derive(Debug)]
pub struct EscapedVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl EscapedVisitor<'_> {
    fn field(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            self.writer
                .write_str(separator)
                .and_then(|()| escape_controls(value, &mut self.writer))
        } else {
            write!(self.writer, "{separator}{}=", field.name())
                .and_then(|()| escape_controls(value, &mut self.writer))
        };
    }
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, value);
        } else {
            self.field(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, &format!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Writes `text` with every control character (C0, DEL, C1) and Unicode line or paragraph
/// separator escaped, so that it stays on one line and cannot drive a terminal.
fn escape_controls(text: &str, out: &mut impl Write) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                write!(out, "\\u{{{:x}}}", u32::from(c))?;
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        escape_controls(text, &mut out).expect("writing to a String");
        out
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("plain ✓ text"), "plain ✓ text");
        assert_eq!(escaped("s1\nINFO forged\r\n"), "s1\\nINFO forged\\r\\n");
        assert_eq!(
            escaped("\u{1b}[31mred\u{7f}\0"),
            "\\u{1b}[31mred\\u{7f}\\u{0}"
        );
        assert_eq!(
            escaped("\u{85}\u{2028}\u{2029}"),
            "\\u{85}\\u{2028}\\u{2029}"
        );
    }
}
