//! What a notification says, parsed from its channel and payload once its MAC is verified (see
//! `schema.sql` for the payloads): the one interface between the notification sources (the LISTEN
//! connection, and NATS in bus mode) and the hub. Pure.
//!
//! PostgreSQL checks no privilege on NOTIFY, so anyone who can connect can send any payload on
//! taskstream's channels. The triggers sign every payload, `<mac>.<json>`, with HMAC-SHA256 over
//! `<channel>:<json>` and a key only the owner and `taskstream_server` can read; a payload whose
//! MAC does not verify is [`Notice::Forged`] and says nothing about any task.
//!
//! In bus mode a payload travels through NATS byte for byte as PostgreSQL sent it, MAC
//! included, so the instance that receives it verifies it, whichever way it came: a NATS
//! client that can publish cannot forge events either.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::db::{EVENTS_CHANNEL, TASKS_CHANNEL};

/// The MAC's length in bytes: HMAC-SHA256's output.
const MAC_BYTES: usize = 32;

/// The MAC's length in the payload: [`MAC_BYTES`] in base64 with padding.
const MAC_LEN: usize = MAC_BYTES.div_ceil(3) * 4;

/// A notification, parsed.
#[derive(Debug)]
pub(crate) enum Notice {
    /// An event of `task` was committed.
    Event { task: String, event: NotifiedEvent },
    /// A task changed: see [`TaskChange`].
    TaskChanged { task: String, change: TaskChange },
    /// Authentic, but naming nothing precise (the `{}` of a payload that would not fit, or a
    /// form this version does not know): re-check every task.
    Unknown,
    /// Not signed with the key: someone without `taskstream_server` sent it.
    Forged,
}

/// A committed event as its notification describes it. The hub hands it to the task's tail
/// unchanged.
#[derive(Debug)]
pub(crate) struct NotifiedEvent {
    pub(crate) session: String,
    /// The session's `started_at` in microseconds: with its id, it names one incarnation of
    /// the session.
    pub(crate) started_at: i64,
    pub(crate) seq: i64,
    /// Type and content, when they travel in the payload (PostgreSQL caps payloads at 8000
    /// bytes, and the address-only mode leaves them out).
    pub(crate) body: Option<(String, String)>,
    /// When the notification arrived, for the notification-to-send latency.
    pub(crate) at: Instant,
}

/// The event payload: `t` task, `s` session, `a` its started_at, `q` seq, and `y` type and `c`
/// content when they travel.
#[derive(Deserialize)]
struct EventPayload {
    t: String,
    s: String,
    a: i64,
    q: i64,
    y: Option<String>,
    c: Option<String>,
}

/// The task payload: `t` task, `k` what happened to it (absent before schema version 4's kinds
/// existed: a status change or a deletion).
#[derive(Deserialize)]
struct TaskPayload {
    t: String,
    k: Option<String>,
}

/// What a task notification says happened. Only [`TaskChange::Ended`] concerns its streams; the
/// others only change the task list (schema version 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskChange {
    /// Its status changed (`k` 's'), or it was deleted ('d'), or a kind this version does not
    /// know: the task's streams re-read it.
    Ended,
    /// Created ('c'), retitled ('t'), or given a new session ('n'): its streams learn of a new
    /// session from its events, so only the task list re-reads it.
    Listed,
}

impl TaskChange {
    fn of(kind: Option<&str>) -> TaskChange {
        match kind {
            Some("c" | "t" | "n") => TaskChange::Listed,
            _ => TaskChange::Ended,
        }
    }
}

/// The key every notification is signed with, read from the database at start.
#[derive(Clone)]
pub(crate) struct NotifyKey(Hmac<Sha256>);

impl fmt::Debug for NotifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotifyKey([redacted])")
    }
}

impl NotifyKey {
    pub(crate) fn new(key: &[u8]) -> NotifyKey {
        NotifyKey(Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// The JSON of `payload` if its MAC verifies for `channel` (compared in constant time).
    fn authentic<'a>(&self, channel: &str, payload: &'a str) -> Option<&'a str> {
        let (mac, json) = payload.split_at_checked(MAC_LEN)?;
        let json = json.strip_prefix('.')?;
        let mut decoded = [0; MAC_BYTES];
        let len = STANDARD.decode_slice(mac, &mut decoded).ok()?;
        let mut check = self.0.clone();
        check.update(channel.as_bytes());
        check.update(b":");
        check.update(json.as_bytes());
        check.verify_slice(&decoded[..len]).ok()?;
        Some(json)
    }
}

impl Notice {
    /// Reads a notification that arrived at `at`. An authentic payload that does not parse
    /// tells nothing precise, so it makes the hub re-check every task rather than be ignored.
    pub(crate) fn parse(channel: &str, payload: &str, at: Instant, key: &NotifyKey) -> Notice {
        let Some(json) = key.authentic(channel, payload) else {
            return Notice::Forged;
        };
        match channel {
            EVENTS_CHANNEL => match serde_json::from_str::<EventPayload>(json) {
                Ok(event) => Notice::Event {
                    task: event.t,
                    event: NotifiedEvent {
                        session: event.s,
                        started_at: event.a,
                        seq: event.q,
                        body: event.y.zip(event.c),
                        at,
                    },
                },
                Err(_) => Notice::Unknown,
            },
            TASKS_CHANNEL => match serde_json::from_str::<TaskPayload>(json) {
                Ok(task) => Notice::TaskChanged {
                    change: TaskChange::of(task.k.as_deref()),
                    task: task.t,
                },
                Err(_) => Notice::Unknown,
            },
            _ => Notice::Unknown,
        }
    }

    /// The task a notification is about (`None`: none, or every task), which decides the NATS
    /// subject it is republished on in bus mode.
    pub(crate) fn task(&self) -> Option<&str> {
        match self {
            Notice::Event { task, .. } | Notice::TaskChanged { task, .. } => Some(task),
            Notice::Unknown | Notice::Forged => None,
        }
    }
}

/// The key notifications are verified with, shared by every source of notifications. It is
/// read from the database by the LISTEN connection at each (re)connect; until then every
/// payload is [`Notice::Forged`] (it costs a poll, never an event).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyCell(Arc<RwLock<Option<NotifyKey>>>);

impl KeyCell {
    /// Stores the key read from the database.
    pub(crate) fn set(&self, key: NotifyKey) {
        // A panic while holding this lock cannot leave the key half-written (it is replaced
        // whole), so a poisoned lock is still consistent.
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(key);
    }

    /// Reads a notification that arrived at `at` (see [`Notice::parse`]).
    pub(crate) fn parse(&self, channel: &str, payload: &str, at: Instant) -> Notice {
        let key = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match key.as_ref() {
            Some(key) => Notice::parse(channel, payload, at, key),
            None => Notice::Forged,
        }
    }

    /// Reads a payload that arrived through NATS on `channel`. Its bytes are the
    /// notification's exactly; bytes that are not UTF-8 came from no PostgreSQL.
    pub(crate) fn parse_bus(&self, channel: &str, payload: &[u8], at: Instant) -> Notice {
        match std::str::from_utf8(payload) {
            Ok(payload) => self.parse(channel, payload, at),
            Err(_) => Notice::Forged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A payload as the triggers sign it.
    fn signed(channel: &str, json: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("key");
        mac.update(format!("{channel}:{json}").as_bytes());
        format!("{}.{json}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn parse(channel: &str, payload: &str) -> Notice {
        Notice::parse(channel, payload, Instant::now(), &NotifyKey::new(KEY))
    }

    #[test]
    fn an_event_payload_names_its_task_session_seq_and_body() {
        let json = r#"{"t":"task","s":"s1","a":17,"q":7,"y":"assistant","c":"hi"}"#;
        let notice = parse(EVENTS_CHANNEL, &signed(EVENTS_CHANNEL, json));
        let Notice::Event { task, event } = notice else {
            panic!("an event: {notice:?}");
        };
        assert_eq!(
            (
                task.as_str(),
                event.session.as_str(),
                event.started_at,
                event.seq
            ),
            ("task", "s1", 17, 7)
        );
        assert_eq!(event.body, Some(("assistant".into(), "hi".into())));
    }

    #[test]
    fn the_mac_matches_pgcrypto_for_a_payload_postgresql_sent() {
        // Recorded from PostgreSQL 15 with the key below (schema.sql's taskstream_signed).
        let key = [
            0x94, 0xac, 0x48, 0x5e, 0x41, 0x30, 0x4e, 0x18, 0x75, 0x42, 0xb3, 0x62, 0x98, 0x31,
            0xe1, 0x55, 0xf6, 0x7e, 0x7c, 0xa8, 0x2a, 0xd8, 0x3f, 0x43, 0x25, 0x32, 0x99, 0xcf,
            0xf6, 0xc3, 0x20, 0x20,
        ];
        let payload = "NhVO88uXTclKZJ6miKL1CtRK4OZyvJfIi9QEfnbzzh4=.{\"t\" : \"w\", \"s\" : \"ws\", \
                       \"a\" : 1796176044348526, \"q\" : 3, \"y\" : \"assistant\", \"c\" : \"héllo\"}";
        let notice = Notice::parse(
            EVENTS_CHANNEL,
            payload,
            Instant::now(),
            &NotifyKey::new(&key),
        );
        assert!(
            matches!(&notice, Notice::Event { event, .. } if event.seq == 3),
            "{notice:?}"
        );
    }

    #[test]
    fn an_oversized_or_address_only_event_travels_without_its_body() {
        let json = r#"{"t":"task","s":"s1","a":17,"q":7}"#;
        let notice = parse(EVENTS_CHANNEL, &signed(EVENTS_CHANNEL, json));
        assert!(matches!(notice, Notice::Event { event, .. } if event.body.is_none()));
    }

    #[test]
    fn a_task_payload_names_the_task() {
        for json in [
            r#"{"k":"s","t":"task","st":"Done"}"#,
            r#"{"k":"d","t":"task"}"#,
        ] {
            let notice = parse(TASKS_CHANNEL, &signed(TASKS_CHANNEL, json));
            let ended = matches!(notice, Notice::TaskChanged { task, change: TaskChange::Ended } if task == "task");
            assert!(ended, "{json}");
        }
        for json in [
            r#"{"k":"c","t":"task"}"#,
            r#"{"k":"t","t":"task"}"#,
            r#"{"k":"n","t":"task"}"#,
        ] {
            let notice = parse(TASKS_CHANNEL, &signed(TASKS_CHANNEL, json));
            let listed = matches!(notice, Notice::TaskChanged { task, change: TaskChange::Listed } if task == "task");
            assert!(listed, "{json}");
        }
    }

    #[test]
    fn anything_authentic_but_unreadable_re_checks_everything() {
        for (channel, json) in [
            (EVENTS_CHANNEL, "{}"),
            (EVENTS_CHANNEL, "not json"),
            (EVENTS_CHANNEL, r#"{"t":"task","s":"s1","a":1,"q":"7"}"#),
            (EVENTS_CHANNEL, r#"{"t":"task","s":"s1","q":7}"#),
            (
                EVENTS_CHANNEL,
                r#"{"t":"task","s":"s1","a":1,"q":9223372036854775808}"#,
            ),
            (TASKS_CHANNEL, "{}"),
            ("elsewhere", r#"{"t":"task"}"#),
        ] {
            assert!(
                matches!(parse(channel, &signed(channel, json)), Notice::Unknown),
                "{channel} {json}"
            );
        }
    }

    #[test]
    fn a_payload_without_a_valid_mac_is_forged() {
        let json = r#"{"t":"task","s":"s1","a":17,"q":7,"y":"assistant","c":"hi"}"#;
        let real = signed(EVENTS_CHANNEL, json);
        let changed = real.replace("\"hi\"", "\"FORGED\"");
        let other_key = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"another key").expect("key");
            mac.update(format!("{EVENTS_CHANNEL}:{json}").as_bytes());
            format!("{}.{json}", STANDARD.encode(mac.finalize().into_bytes()))
        };
        let huge = format!("{}.{}", &real[..MAC_LEN], "x".repeat(100_000));
        for payload in [
            json.to_owned(),
            changed,
            other_key,
            huge,
            "{}".to_owned(),
            String::new(),
            ".".repeat(45),
            format!("{}{json}", &real[..MAC_LEN]),
            format!("{}é.{json}", &real[..MAC_LEN - 1]),
            // Authentic on the other channel: a payload cannot change channels.
            signed(TASKS_CHANNEL, json),
        ] {
            assert!(
                matches!(parse(EVENTS_CHANNEL, &payload), Notice::Forged),
                "{payload:.80}"
            );
        }
    }

    #[test]
    fn a_notice_names_the_task_it_is_about() {
        let event = parse(
            EVENTS_CHANNEL,
            &signed(EVENTS_CHANNEL, r#"{"t":"a","s":"s1","a":1,"q":1}"#),
        );
        assert_eq!(event.task(), Some("a"));
        let task = parse(
            TASKS_CHANNEL,
            &signed(TASKS_CHANNEL, r#"{"k":"d","t":"b"}"#),
        );
        assert_eq!(task.task(), Some("b"));
        assert_eq!(
            parse(EVENTS_CHANNEL, &signed(EVENTS_CHANNEL, "{}")).task(),
            None
        );
        assert_eq!(parse(EVENTS_CHANNEL, "{}").task(), None, "forged");
    }

    #[test]
    fn a_bus_payload_is_verified_like_the_notification_it_carries() {
        let keys = KeyCell::default();
        let json = r#"{"t":"task","s":"s1","a":1,"q":7,"y":"assistant","c":"hi"}"#;
        let payload = signed(EVENTS_CHANNEL, json);
        let before = keys.parse_bus(EVENTS_CHANNEL, payload.as_bytes(), Instant::now());
        assert!(matches!(before, Notice::Forged), "no key read yet");
        keys.set(NotifyKey::new(KEY));
        let notice = keys.parse_bus(EVENTS_CHANNEL, payload.as_bytes(), Instant::now());
        assert!(matches!(notice, Notice::Event { event, .. } if event.seq == 7));
        let notice = keys.parse_bus(EVENTS_CHANNEL, b"{\"t\":\"\xff\"}", Instant::now());
        assert!(matches!(notice, Notice::Forged));
        let unsigned = keys.parse_bus(EVENTS_CHANNEL, json.as_bytes(), Instant::now());
        assert!(matches!(unsigned, Notice::Forged));
    }
}
