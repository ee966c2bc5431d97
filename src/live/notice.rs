//! What a notification says, parsed from its channel and payload (see `schema.sql` for the
//! payloads): the one interface between the notification sources (the LISTEN connection, and
//! NATS in bus mode) and the hub. Pure.
//!
//! In bus mode a payload travels through NATS byte for byte as PostgreSQL sent it, so every
//! check of a payload is made here, by the instance that receives it, whichever way it came.

use std::time::Instant;

use serde::Deserialize;

use crate::db::{EVENTS_CHANNEL, TASKS_CHANNEL};

/// A notification, parsed.
#[derive(Debug)]
pub(crate) enum Notice {
    /// An event of `task` was committed.
    Event { task: String, event: NotifiedEvent },
    /// A task's status changed or the task was deleted.
    TaskChanged { task: String },
    /// Something changed that the payload could not name: re-check every task.
    Unknown,
}

/// A committed event as its notification describes it. The hub hands it to the task's tail
/// unchanged.
#[derive(Debug)]
pub(crate) struct NotifiedEvent {
    pub(crate) session: String,
    pub(crate) seq: i64,
    /// Type and content, when they fit in the payload (PostgreSQL caps payloads at 8000 bytes).
    pub(crate) body: Option<(String, String)>,
    /// When the notification arrived, for the notification-to-send latency.
    pub(crate) at: Instant,
}

/// The event payload: `t` task, `s` session, `q` seq, and `y` type and `c` content when they
/// fit.
#[derive(Deserialize)]
struct EventPayload {
    t: String,
    s: String,
    q: i64,
    y: Option<String>,
    c: Option<String>,
}

/// The task payload: `t` task (status change or deletion).
#[derive(Deserialize)]
struct TaskPayload {
    t: String,
}

impl Notice {
    /// Reads a notification that arrived at `at`. A payload that does not parse tells nothing
    /// precise, so it makes the hub re-check every task rather than be ignored.
    pub(crate) fn parse(channel: &str, payload: &str, at: Instant) -> Notice {
        match channel {
            EVENTS_CHANNEL => match serde_json::from_str::<EventPayload>(payload) {
                Ok(event) => Notice::Event {
                    task: event.t,
                    event: NotifiedEvent {
                        session: event.s,
                        seq: event.q,
                        body: event.y.zip(event.c),
                        at,
                    },
                },
                Err(_) => Notice::Unknown,
            },
            TASKS_CHANNEL => match serde_json::from_str::<TaskPayload>(payload) {
                Ok(task) => Notice::TaskChanged { task: task.t },
                Err(_) => Notice::Unknown,
            },
            _ => Notice::Unknown,
        }
    }

    /// Reads a payload that arrived through NATS on `channel` (see [`Notice::parse`]). Its bytes
    /// are the notification's exactly; bytes that are not UTF-8 came from no PostgreSQL.
    pub(crate) fn from_bus(channel: &str, payload: &[u8], at: Instant) -> Notice {
        match std::str::from_utf8(payload) {
            Ok(payload) => Notice::parse(channel, payload, at),
            Err(_) => Notice::Unknown,
        }
    }

    /// The task a notification is about (`None`: re-check every task), which decides the NATS
    /// subject it is republished on in bus mode.
    pub(crate) fn task(&self) -> Option<&str> {
        match self {
            Notice::Event { task, .. } | Notice::TaskChanged { task } => Some(task),
            Notice::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(channel: &str, payload: &str) -> Notice {
        Notice::parse(channel, payload, Instant::now())
    }

    #[test]
    fn an_event_payload_names_its_task_session_seq_and_body() {
        let notice = parse(
            EVENTS_CHANNEL,
            r#"{"t":"task","s":"s1","q":7,"y":"assistant","c":"hi"}"#,
        );
        let Notice::Event { task, event } = notice else {
            panic!("an event: {notice:?}");
        };
        assert_eq!(
            (task.as_str(), event.session.as_str(), event.seq),
            ("task", "s1", 7)
        );
        assert_eq!(event.body, Some(("assistant".into(), "hi".into())));
    }

    #[test]
    fn an_oversized_event_travels_without_its_body() {
        let notice = parse(EVENTS_CHANNEL, r#"{"t":"task","s":"s1","q":7}"#);
        assert!(matches!(notice, Notice::Event { event, .. } if event.body.is_none()));
    }

    #[test]
    fn a_task_payload_names_the_task() {
        let notice = parse(TASKS_CHANNEL, r#"{"k":"s","t":"task","st":"Done"}"#);
        assert!(matches!(notice, Notice::TaskChanged { task } if task == "task"));
    }

    #[test]
    fn a_notice_names_the_task_it_is_about() {
        let event = parse(EVENTS_CHANNEL, r#"{"t":"a","s":"s1","q":1}"#);
        assert_eq!(event.task(), Some("a"));
        let task = parse(TASKS_CHANNEL, r#"{"k":"d","t":"b"}"#);
        assert_eq!(task.task(), Some("b"));
        assert_eq!(parse(EVENTS_CHANNEL, "{}").task(), None);
    }

    #[test]
    fn a_bus_payload_is_read_like_the_notification_it_carries() {
        let payload = r#"{"t":"task","s":"s1","q":7,"y":"assistant","c":"hi"}"#;
        let notice = Notice::from_bus(EVENTS_CHANNEL, payload.as_bytes(), Instant::now());
        assert!(matches!(notice, Notice::Event { event, .. } if event.seq == 7));
        let notice = Notice::from_bus(EVENTS_CHANNEL, b"{\"t\":\"\xff\"}", Instant::now());
        assert!(matches!(notice, Notice::Unknown));
    }

    #[test]
    fn anything_unreadable_re_checks_everything() {
        for (channel, payload) in [
            (EVENTS_CHANNEL, "{}"),
            (EVENTS_CHANNEL, "not json"),
            (EVENTS_CHANNEL, r#"{"t":"task","s":"s1","q":"7"}"#),
            (TASKS_CHANNEL, "{}"),
            ("elsewhere", r#"{"t":"task"}"#),
        ] {
            assert!(
                matches!(parse(channel, payload), Notice::Unknown),
                "{channel} {payload}"
            );
        }
    }
}
