//! A multi-task stream's decisions at its start, apart from I/O: which entry of the client's
//! cursor belongs to which requested task, and where each task starts.
//!
//! An entry names its task by a hash under the cursor's salt, so a cursor written for another
//! task list still resumes the tasks both lists share; entries of tasks no longer requested
//! match nothing and are ignored, and new tasks have no entry (they start at the beginning of
//! their latest session).

use crate::db::TaskPosition;
use crate::wire::cursor::Cursor;
use crate::wire::multi_cursor::{self, Entry, MultiCursor};

use super::position::{Sent, nothing_past};

/// Where one task of a multi-task stream starts.
#[derive(Debug, PartialEq)]
pub(super) enum LaneStart {
    /// The client's cursor says `task_complete` was delivered and nothing new came since: the
    /// stream does not follow the task again.
    Done,
    /// Follow the task from here.
    Follow(Sent),
}

/// Why a cursor cannot be used with the requested tasks (`400`).
#[derive(Debug, PartialEq)]
pub(crate) struct Unmatched(pub(crate) &'static str);

/// The salt a stream writes its cursors with, and each requested task's entry in the client's
/// cursor. A resuming stream keeps the cursor's salt; two requested tasks that share a hash
/// under it (only possible when the list changed) cannot be told apart, and the cursor is
/// refused rather than risk resuming one task at the other's place.
pub(super) fn resolve(
    cursor: Option<&MultiCursor>,
    task_ids: &[&str],
) -> Result<(u8, Vec<Option<Entry>>), Unmatched> {
    let Some(cursor) = cursor else {
        let salt = multi_cursor::pick_salt(None, task_ids)
            .ok_or(Unmatched("these task ids cannot be told apart"))?;
        return Ok((salt, vec![None; task_ids.len()]));
    };
    if !multi_cursor::distinct(cursor.salt, task_ids) {
        return Err(Unmatched(
            "the cursor cannot tell two of these tasks apart; reconnect without it",
        ));
    }
    let entries = task_ids
        .iter()
        .map(|id| {
            let hash = multi_cursor::task_hash(cursor.salt, id);
            cursor.entries.iter().find(|e| e.task == hash).copied()
        })
        .collect();
    Ok((cursor.salt, entries))
}

/// Where a task starts, from its entry in the client's cursor and its position (`None`: the
/// task does not exist). `None` when the task does not exist and the cursor did not see it
/// complete (`404`). A task the cursor saw complete is followed again only when it is back in
/// progress with events past the cursor, as a single-task stream would.
pub(super) fn lane_start(
    entry: Option<&Entry>,
    position: Option<&TaskPosition>,
) -> Option<LaneStart> {
    let Some(position) = position else {
        return entry.filter(|e| e.complete).map(|_| LaneStart::Done);
    };
    let cursor = entry.map(|entry| as_cursor(entry, position));
    if let Some(cursor) = &cursor
        && cursor.complete
        && (!position.in_progress() || nothing_past(cursor, position))
    {
        return Some(LaneStart::Done);
    }
    Some(LaneStart::Follow(Sent::start(position, cursor.as_ref())))
}

/// The single-task cursor an entry stands for at this position: its session hash resolved
/// against the task's latest session (any other session resumes nowhere in particular, so the
/// latest starts from its beginning).
fn as_cursor(entry: &Entry, position: &TaskPosition) -> Cursor {
    let latest = position.head.as_ref().map(|(session, _)| session);
    let session = match (entry.session, latest) {
        (Some(hash), Some(latest)) if hash == latest.hash => Some(latest.id.clone()),
        (Some(_), _) => Some(OTHER.to_owned()),
        (None, _) => None,
    };
    Cursor {
        session,
        seq: if entry.session.is_some() {
            entry.seq
        } else {
            0
        },
        complete: entry.complete,
    }
}

/// Stands for a session that is not the latest one. Session ids of the latest session are
/// compared by hash first, so this only has to differ from the latest's id, which it does: a
/// session id is never a NUL.
const OTHER: &str = "\0";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fixtures::{position, session};

    fn entry(session: Option<&str>, seq: i64, complete: bool) -> Entry {
        Entry {
            task: 0,
            session: session.map(multi_cursor::session_hash),
            seq,
            complete,
        }
    }

    fn follows_from(start: Option<LaneStart>) -> Option<(String, i64)> {
        match start {
            Some(LaneStart::Follow(sent)) => Some((sent.session?.id.clone(), sent.seq)),
            _ => None,
        }
    }

    #[test]
    fn an_entry_of_the_latest_session_resumes_after_it_and_any_other_starts_it_over() {
        let s1 = session("s1", 1);
        let running = position(true, Some((&s1, 9)));
        let resume = |e| follows_from(lane_start(Some(&e), Some(&running)));
        assert_eq!(resume(entry(Some("s1"), 4, false)), Some(("s1".into(), 4)));
        assert_eq!(resume(entry(Some("old"), 4, false)), Some(("s1".into(), 0)));
        assert_eq!(resume(entry(None, 0, false)), Some(("s1".into(), 0)));
        assert_eq!(
            follows_from(lane_start(None, Some(&running))),
            Some(("s1".into(), 0)),
            "a task new to the list starts at the beginning"
        );
    }

    #[test]
    fn a_completed_entry_is_done_unless_the_task_is_back_with_new_events() {
        let s1 = session("s1", 1);
        let seen = entry(Some("s1"), 9, true);
        let ended = position(false, Some((&s1, 9)));
        assert_eq!(lane_start(Some(&seen), Some(&ended)), Some(LaneStart::Done));
        let back_idle = position(true, Some((&s1, 9)));
        assert_eq!(
            lane_start(Some(&seen), Some(&back_idle)),
            Some(LaneStart::Done)
        );
        let back_busy = position(true, Some((&s1, 11)));
        assert_eq!(
            follows_from(lane_start(Some(&seen), Some(&back_busy))),
            Some(("s1".into(), 9))
        );
        let s2 = session("s2", 2);
        let new_session = position(true, Some((&s2, 1)));
        assert_eq!(
            follows_from(lane_start(Some(&seen), Some(&new_session))),
            Some(("s2".into(), 0))
        );
        let never = entry(None, 0, true);
        assert_eq!(
            lane_start(Some(&never), Some(&position(true, None))),
            Some(LaneStart::Done)
        );
    }

    #[test]
    fn a_missing_task_is_404_unless_the_cursor_saw_it_complete() {
        assert_eq!(lane_start(None, None), None);
        assert_eq!(lane_start(Some(&entry(Some("s1"), 3, false)), None), None);
        assert_eq!(
            lane_start(Some(&entry(Some("s1"), 3, true)), None),
            Some(LaneStart::Done)
        );
    }

    #[test]
    fn entries_are_matched_to_tasks_by_hash_under_the_cursor_salt() {
        let hash = |id| multi_cursor::task_hash(5, id);
        let cursor = MultiCursor {
            salt: 5,
            entries: vec![
                Entry {
                    task: hash("a"),
                    ..entry(None, 0, true)
                },
                Entry {
                    task: hash("gone"),
                    ..entry(None, 0, false)
                },
            ],
        };
        let (salt, entries) = resolve(Some(&cursor), &["new", "a"]).expect("resolves");
        assert_eq!(salt, 5);
        assert_eq!(entries[0], None);
        assert_eq!(entries[1].map(|e| e.complete), Some(true));
        assert!(
            resolve(Some(&cursor), &["x", "x"]).is_err(),
            "two tasks share a hash"
        );
        assert!(resolve(None, &["x", "y"]).is_ok());
    }
}
