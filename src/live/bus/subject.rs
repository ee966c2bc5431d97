//! The NATS subjects of bus mode, pure: `<prefix>.<channel>.<key>`, where `<channel>` is the
//! PostgreSQL channel the notification came from and `<key>` names the task it is about, or is
//! `all` for a notification that names none ("re-check every task").
//!
//! A task id is free text, and a subject may not contain dots, wildcards or whitespace, so the
//! key is a hash of the id: the first 16 bytes of its SHA-256 in unpadded base64url (22
//! characters of `[A-Za-z0-9_-]`, never `all`). Two ids sharing a key would only share a
//! subject: each instance routes by the task named in the payload, never by the subject.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The key of notifications that name no task.
const EVERYONE: &str = "all";

/// Bytes of the task id's SHA-256 kept in its key: 128 bits, so unrelated ids practically never
/// share a subject.
const KEY_BYTES: usize = 16;

/// The subject of a notification on `channel` about `task` (`None`: about every task).
pub(crate) fn publish(prefix: &str, channel: &str, task: Option<&str>) -> String {
    match task {
        Some(task) => format!("{prefix}.{channel}.{}", key(task)),
        None => format!("{prefix}.{channel}.{EVERYONE}"),
    }
}

/// What an instance subscribes to while it watches `task` (`None`: the notifications about
/// every task, subscribed to for as long as bus mode runs): every channel's subject.
pub(crate) fn watch(prefix: &str, task: Option<&str>) -> String {
    publish(prefix, "*", task)
}

/// The channel a message arrived on, from its subject: the token before the key.
pub(crate) fn channel(subject: &str) -> Option<&str> {
    let mut tokens = subject.rsplit('.');
    tokens.next()?;
    tokens.next()
}

fn key(task: &str) -> String {
    let digest = Sha256::digest(task.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..KEY_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_subject_token(token: &str) -> bool {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn any_task_id_makes_a_valid_subject() {
        for task in [
            "t",
            "",
            "a.b",
            "*",
            ">",
            "a b\r\n",
            "tâche ✓",
            &"x".repeat(10_000),
        ] {
            let subject = publish("taskstream", "taskstream_events", Some(task));
            let tokens: Vec<&str> = subject.split('.').collect();
            assert_eq!(tokens.len(), 3, "{subject}");
            assert!(tokens.iter().all(|t| is_subject_token(t)), "{subject}");
            assert_eq!(tokens[2].len(), 22);
            assert_ne!(tokens[2], EVERYONE);
        }
    }

    #[test]
    fn a_task_has_one_key_on_every_channel_and_every_instance() {
        let events = publish("p", "taskstream_events", Some("task-42"));
        let tasks = publish("p", "taskstream_tasks", Some("task-42"));
        assert_eq!(events, "p.taskstream_events.OjtuQzeHpfw_FZBccI0keg");
        assert_eq!(tasks, "p.taskstream_tasks.OjtuQzeHpfw_FZBccI0keg");
        assert_eq!(watch("p", Some("task-42")), "p.*.OjtuQzeHpfw_FZBccI0keg");
        assert_ne!(events, publish("p", "taskstream_events", Some("task-43")));
    }

    #[test]
    fn notifications_about_no_task_go_to_everyone() {
        assert_eq!(
            publish("a.b", "taskstream_events", None),
            "a.b.taskstream_events.all"
        );
        assert_eq!(watch("a.b", None), "a.b.*.all");
    }

    #[test]
    fn the_channel_is_read_back_from_the_subject() {
        let subject = publish("prod.taskstream", "taskstream_tasks", Some("t"));
        assert_eq!(channel(&subject), Some("taskstream_tasks"));
        assert_eq!(
            channel("p.taskstream_events.all"),
            Some("taskstream_events")
        );
        assert_eq!(channel("lonely"), None);
    }
}
