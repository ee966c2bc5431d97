//! A tail's decisions, apart from I/O: what a notification or an observed position asks of it.
//! The tail task (the parent module) carries them out.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::db::{Session, TaskPosition};

/// Frames at most this large always go into the ring: every event a notification carries is
/// smaller (PostgreSQL caps payloads at 8000 bytes), so the ring holds at most its capacity
/// times this of them, and live delivery of ordinary events is never turned into reads.
pub(super) const SMALL_FRAME: usize = 8 * 1024;

/// Where a tail stands once it has read its position.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Head {
    /// The latest session, `None` while the task has none.
    pub(super) session: Option<Arc<Session>>,
    /// The last seq published in that session.
    pub(super) seq: i64,
}

/// The large frames a tail has sent to its ring that a subscriber may not have read yet. A
/// subscriber that stops reading pins every message after its position until the ring wraps,
/// so without a bound a handful of slow clients on a session of large events would pin the
/// ring's capacity times the largest event. Large frames beyond the budget are not sent: the
/// tail announces the event instead, and subscribers read it from the table at their own pace.
#[derive(Debug, Default)]
pub(super) struct LargeFrames {
    /// Messages sent to the ring so far.
    sent: u64,
    /// The number (in `sent` order) and size of each large frame that may still be held.
    held: VecDeque<(u64, usize)>,
}

impl LargeFrames {
    /// Whether a frame of `len` bytes may go into the ring, which still holds its `queued`
    /// most recent messages (`broadcast::Sender::len`), within `budget` bytes of large frames.
    /// The first large frame always may: an event is held whole however large.
    pub(super) fn admit(&mut self, len: usize, queued: usize, budget: usize) -> bool {
        let oldest_queued = self.sent.saturating_sub(queued as u64);
        while self.held.front().is_some_and(|&(n, _)| n < oldest_queued) {
            self.held.pop_front();
        }
        if len <= SMALL_FRAME {
            return true;
        }
        let held: usize = self.held.iter().map(|&(_, size)| size).sum();
        held == 0 || held + len <= budget
    }

    /// Counts a message sent to the ring, with `frame` bytes of event frame (0 for others).
    pub(super) fn sent(&mut self, frame: usize) {
        if frame > SMALL_FRAME {
            self.held.push_back((self.sent, frame));
        }
        self.sent += 1;
    }
}

/// What to do with an event notification.
#[derive(Debug, PartialEq)]
pub(super) enum OnEvent {
    /// The tail does not know its position yet: read it, then start from this event.
    ReadFirstPosition,
    /// Already published (read from the table earlier).
    Ignore,
    /// The event right after the head, with its content: publish it without any query.
    Publish(Arc<Session>),
    /// Anything else (a gap, a payload without content, another session): re-read.
    Reread,
}

/// What catching up with an observed position takes.
#[derive(Debug, PartialEq)]
pub(super) struct Catchup {
    pub(super) step: Step,
    /// Whether subscribers are then told that the task ended. Every time it is observed so: a
    /// subscriber that read `InProgress` just before the change must not wait forever because
    /// the tail already knew.
    pub(super) complete: bool,
}

/// See [`Catchup`].
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Nothing to read.
    Stay,
    /// The task has no session yet: the tail now knows where it stands.
    NoSession,
    /// Move the head to this event without publishing the rows before it, and say so: on the
    /// first knowledge of a position (subscribers replayed what was stored before they
    /// subscribed), or when more rows are missing than subscribers could take from the ring.
    Advance(Arc<Session>, i64),
    /// Publish the stored rows past this head (a newer session starts at 0).
    Read(Head),
}

/// A notified event's place: its session (id and `started_at`, which together name one
/// incarnation of a session) and its seq.
#[derive(Debug, Clone, Copy)]
pub(super) struct Notified<'a> {
    pub(super) session: &'a str,
    pub(super) started_at: i64,
    pub(super) seq: i64,
}

impl Notified<'_> {
    fn is_of(&self, session: &Session) -> bool {
        self.session == session.id && self.started_at == session.started_at
    }

    /// Whether its session started before `session` (the order that decides the latest one).
    fn is_older_than(&self, session: &Session) -> bool {
        (self.started_at, self.session) < (session.started_at, session.id.as_str())
    }
}

/// What an event notification (with its content or not) asks of a tail at `head`.
/// Notifications arrive in commit order and `seq` grows in commit order within a session, so
/// the one right after the head needs no query. One of an older session than the head's (a
/// replay: anyone who can connect may resend a payload it saw) is ignored for free.
pub(super) fn on_event(head: Option<&Head>, event: Notified<'_>, has_body: bool) -> OnEvent {
    let Some(head) = head else {
        return OnEvent::ReadFirstPosition;
    };
    match &head.session {
        Some(current) if event.is_of(current) => {
            if event.seq <= head.seq {
                OnEvent::Ignore
            } else if has_body && head.seq.checked_add(1) == Some(event.seq) {
                OnEvent::Publish(current.clone())
            } else {
                OnEvent::Reread
            }
        }
        Some(current) if event.is_older_than(current) => OnEvent::Ignore,
        _ => OnEvent::Reread,
    }
}

/// Where a new tail starts when its first notification is `seq` of `session` and its position,
/// read after that notification, is `position`. The tail was registered before its first
/// subscriber read anything, and notifications arrive in commit order, so every row of the
/// session before this one was committed before that read and is in every subscriber's replay:
/// the tail starts right before this event. `None` when the position shows another session, a
/// task that is gone, or a seq it does not reach: the position is then taken as observed.
pub(super) fn first_head(position: Option<&TaskPosition>, event: Notified<'_>) -> Option<Head> {
    let (latest, last_seq) = position?.head.as_ref()?;
    if !event.is_of(latest) || event.seq > *last_seq {
        return None;
    }
    Some(Head {
        session: Some(latest.clone()),
        seq: event.seq.checked_sub(1).filter(|seq| *seq >= 0)?,
    })
}

/// What catching up with an observed `position` (`None`: the task is gone) takes from `head`.
/// `max_read` is the most rows a tail reads to publish; beyond it subscribers read the table.
pub(super) fn catch_up(
    head: Option<&Head>,
    position: Option<&TaskPosition>,
    max_read: i64,
) -> Catchup {
    let Some(position) = position else {
        return Catchup {
            step: Step::Stay,
            complete: true,
        };
    };
    let step = match (&position.head, head) {
        (None, _) => Step::NoSession,
        (Some((latest, last_seq)), None) => Step::Advance(latest.clone(), *last_seq),
        (Some((latest, last_seq)), Some(head)) => {
            let from = match &head.session {
                Some(current) if !latest.is_newer_than(current) => head.clone(),
                // A newer session (or the first): it is read from its beginning.
                _ => Head {
                    session: Some(latest.clone()),
                    seq: 0,
                },
            };
            let behind = match &from.session {
                Some(current) if current.id == latest.id => last_seq.saturating_sub(from.seq),
                _ => 0,
            };
            if behind > max_read {
                Step::Advance(latest.clone(), *last_seq)
            } else if behind > 0 {
                Step::Read(from)
            } else {
                Step::Stay
            }
        }
    };
    Catchup {
        step,
        complete: !position.in_progress(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fixtures::{position, session};

    fn head(session: &Arc<Session>, seq: i64) -> Head {
        Head {
            session: Some(session.clone()),
            seq,
        }
    }

    /// Event `seq` of the session `session` that started at `started_at`.
    fn at(session: &str, started_at: i64, seq: i64) -> Notified<'_> {
        Notified {
            session,
            started_at,
            seq,
        }
    }

    #[test]
    fn small_frames_always_go_into_the_ring() {
        let mut large = LargeFrames::default();
        for _ in 0..1000 {
            assert!(large.admit(SMALL_FRAME, 256, 0));
            large.sent(SMALL_FRAME);
        }
    }

    #[test]
    fn large_frames_unread_by_a_subscriber_are_bounded_in_bytes() {
        const MB: usize = 1_000_000;
        let mut large = LargeFrames::default();
        // Nothing read: the first large frame goes in whole, however large; then up to the
        // budget; beyond it, none (each refusal still sends a message: the announcement).
        assert!(large.admit(3 * MB, 0, 2 * MB), "one event is held whole");
        large.sent(3 * MB);
        assert!(!large.admit(MB, 1, 2 * MB));
        large.sent(0);
        assert!(large.admit(100, 2, 2 * MB), "small frames still go");
        large.sent(100);
        // Every subscriber has read everything: nothing is held any more.
        assert!(large.admit(MB, 0, 2 * MB));
        large.sent(MB);
        assert!(large.admit(MB, 1, 2 * MB), "1 + 1 MB fit in 2");
        large.sent(MB);
        assert!(!large.admit(MB, 2, 2 * MB), "1 + 1 + 1 MB do not");
        large.sent(0);
        // The older of the two was read (only the last two messages are queued).
        assert!(large.admit(MB, 2, 2 * MB));
    }

    #[test]
    fn the_next_event_with_its_body_is_published_without_a_query() {
        let s1 = session("s1", 1);
        let here = head(&s1, 4);
        assert_eq!(
            on_event(Some(&here), at("s1", 1, 5), true),
            OnEvent::Publish(s1)
        );
    }

    #[test]
    fn an_event_already_published_is_ignored() {
        let here = head(&session("s1", 1), 4);
        assert_eq!(on_event(Some(&here), at("s1", 1, 4), true), OnEvent::Ignore);
        assert_eq!(
            on_event(Some(&here), at("s1", 1, 1), false),
            OnEvent::Ignore
        );
        assert_eq!(
            on_event(Some(&here), at("s1", 1, i64::MIN), true),
            OnEvent::Ignore
        );
    }

    #[test]
    fn a_gap_a_missing_body_or_another_session_re_reads() {
        let here = head(&session("s1", 1), 4);
        assert_eq!(on_event(Some(&here), at("s1", 1, 6), true), OnEvent::Reread);
        assert_eq!(
            on_event(Some(&here), at("s1", 1, 5), false),
            OnEvent::Reread
        );
        assert_eq!(on_event(Some(&here), at("s2", 2, 1), true), OnEvent::Reread);
        assert_eq!(
            on_event(Some(&here), at("s1", 1, i64::MAX), true),
            OnEvent::Reread
        );
        let empty = Head {
            session: None,
            seq: 0,
        };
        assert_eq!(
            on_event(Some(&empty), at("s1", 1, 1), true),
            OnEvent::Reread
        );
    }

    #[test]
    fn a_tail_that_does_not_know_its_position_reads_it_first() {
        assert_eq!(
            on_event(None, at("s1", 1, 1), true),
            OnEvent::ReadFirstPosition
        );
    }

    #[test]
    fn a_new_tail_starts_right_before_its_first_notification() {
        let s1 = session("s1", 1);
        let read = position(true, Some((&s1, 9)));
        assert_eq!(first_head(Some(&read), at("s1", 1, 7)), Some(head(&s1, 6)));
        assert_eq!(first_head(Some(&read), at("s1", 1, 9)), Some(head(&s1, 8)));
    }

    #[test]
    fn a_first_notification_that_the_position_does_not_confirm_is_not_trusted() {
        let s1 = session("s1", 1);
        let read = position(true, Some((&s1, 9)));
        assert_eq!(
            first_head(Some(&read), at("s1", 1, 10)),
            None,
            "past the table"
        );
        assert_eq!(
            first_head(Some(&read), at("s2", 2, 1)),
            None,
            "another session"
        );
        assert_eq!(first_head(Some(&read), at("s1", 1, 0)), None);
        assert_eq!(first_head(Some(&read), at("s1", 1, i64::MIN)), None);
        assert_eq!(first_head(None, at("s1", 1, 1)), None, "task gone");
        assert_eq!(
            first_head(Some(&position(true, None)), at("s1", 1, 1)),
            None
        );
        assert_eq!(
            first_head(Some(&read), at("s1", 2, 7)),
            None,
            "another incarnation of the session id"
        );
    }

    #[test]
    fn a_replay_of_an_older_session_is_ignored_without_a_query() {
        let here = head(&session("s2", 5), 4);
        assert_eq!(on_event(Some(&here), at("s1", 1, 9), true), OnEvent::Ignore);
        assert_eq!(
            on_event(Some(&here), at("s2", 3, 5), true),
            OnEvent::Ignore,
            "an older incarnation of the same id (deleted, then reused)"
        );
        assert_eq!(
            on_event(Some(&here), at("s2", 7, 5), true),
            OnEvent::Reread,
            "a newer incarnation"
        );
        assert_eq!(on_event(Some(&here), at("s3", 9, 1), true), OnEvent::Reread);
        assert_eq!(
            on_event(Some(&here), at("s1", 5, 1), true),
            OnEvent::Ignore,
            "tie: by id"
        );
    }

    #[test]
    fn a_gone_task_completes() {
        let here = head(&session("s1", 1), 4);
        let plan = catch_up(Some(&here), None, 100);
        assert_eq!((plan.step, plan.complete), (Step::Stay, true));
    }

    #[test]
    fn first_knowledge_advances_without_publishing() {
        let s1 = session("s1", 1);
        let plan = catch_up(None, Some(&position(true, Some((&s1, 3)))), 100);
        assert_eq!(plan.step, Step::Advance(s1, 3));
        assert!(!plan.complete);
    }

    #[test]
    fn rows_past_the_head_are_read_and_published() {
        let s1 = session("s1", 1);
        let plan = catch_up(
            Some(&head(&s1, 3)),
            Some(&position(true, Some((&s1, 5)))),
            100,
        );
        assert_eq!(plan.step, Step::Read(head(&s1, 3)));
    }

    #[test]
    fn a_newer_session_is_read_from_its_beginning() {
        let (s1, s2) = (session("s1", 1), session("s2", 2));
        let plan = catch_up(
            Some(&head(&s1, 3)),
            Some(&position(true, Some((&s2, 2)))),
            100,
        );
        assert_eq!(plan.step, Step::Read(head(&s2, 0)));
        let empty = Head {
            session: None,
            seq: 0,
        };
        let plan = catch_up(Some(&empty), Some(&position(true, Some((&s2, 2)))), 100);
        assert_eq!(plan.step, Step::Read(head(&s2, 0)));
    }

    #[test]
    fn too_far_behind_advances_and_subscribers_read_the_table() {
        let s1 = session("s1", 1);
        let plan = catch_up(
            Some(&head(&s1, 3)),
            Some(&position(true, Some((&s1, 200)))),
            100,
        );
        assert_eq!(plan.step, Step::Advance(s1, 200));
    }

    #[test]
    fn level_with_the_table_stays_and_completes_when_the_task_ended() {
        let s1 = session("s1", 1);
        let plan = catch_up(
            Some(&head(&s1, 5)),
            Some(&position(false, Some((&s1, 5)))),
            100,
        );
        assert_eq!((plan.step, plan.complete), (Step::Stay, true));
        // An older session than the one followed is never gone back to.
        let s0 = session("s0", 0);
        let plan = catch_up(
            Some(&head(&s1, 5)),
            Some(&position(true, Some((&s0, 9)))),
            100,
        );
        assert_eq!(plan.step, Step::Stay);
    }

    #[test]
    fn a_task_without_a_session_is_known_to_have_none() {
        let plan = catch_up(None, Some(&position(false, None)), 100);
        assert_eq!((plan.step, plan.complete), (Step::NoSession, true));
    }
}
