//! What a notification says, parsed from its channel and payload (see `schema.sql` for the
//! payloads): the one interface between the LISTEN connection and the hub. Pure.

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
