//! A stream's decisions, apart from I/O: where a cursor places it, whether a live message is
//! next, already sent or a gap, when it must catch up from the table, and when it completes.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::db::{Session, TaskPosition};
use crate::live::tail::Live;
use crate::wire::cursor::Cursor;

/// How far a stream has got: the session of the last event sent (or the one being replayed)
/// and that event's seq. `session` is `None` before any.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sent {
    pub(super) session: Option<Arc<Session>>,
    pub(super) seq: i64,
}

/// Where an event stands relative to what a stream has sent.
#[derive(Debug, PartialEq)]
pub(super) enum Place {
    /// The event right after the cursor: send it.
    Next,
    /// Already sent (or of an older session): skip it.
    Sent,
    /// Something is missing between the cursor and this event: catch up from the table.
    Gap,
}

/// What a message from the tail asks of a live stream.
#[derive(Debug, PartialEq)]
pub(super) enum OnLive {
    /// Send this event's frame.
    Send,
    /// Nothing new for this stream.
    Skip,
    /// The stream is behind (a gap, a lag, a head it has not reached): read the table.
    CatchUp,
    /// The task ended and the stream has everything: send `complete`.
    Complete,
    /// The tail is gone, which happens only when the server stops.
    Closed,
}

impl Sent {
    /// Places a stream at the client's cursor: right after it when it names the latest
    /// session, at the start of the latest session otherwise (an older session, or one the
    /// task does not have). A cursor past the session's end (a restored database) is held at
    /// the end rather than replaying what the client already has.
    pub(super) fn start(position: &TaskPosition, cursor: Option<&Cursor>) -> Sent {
        let Some((latest, last_seq)) = &position.head else {
            return Sent::default();
        };
        let seq = match cursor {
            Some(Cursor {
                session: Some(session),
                seq,
                ..
            }) if *session == latest.id => (*seq).min(*last_seq),
            _ => 0,
        };
        Sent {
            session: Some(latest.clone()),
            seq,
        }
    }

    /// Moves to the position's latest session, from its beginning, if it is newer than the
    /// one being streamed (the agent was restarted).
    pub(super) fn follow_latest(&mut self, position: &TaskPosition) {
        if let Some((latest, _)) = &position.head {
            let newer = match &self.session {
                Some(current) => latest.is_newer_than(current),
                None => true,
            };
            if newer {
                self.session = Some(latest.clone());
                self.seq = 0;
            }
        }
    }

    /// Records that event `seq` of `session` was sent. Keeps the `Arc` it has when the session
    /// is the same one, so that a live frame costs no reference-count traffic.
    pub(super) fn record(&mut self, session: &Arc<Session>, seq: i64) {
        if !self
            .session
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            self.session = Some(session.clone());
        }
        self.seq = seq;
    }

    /// Where event `seq` of `session` stands relative to what was sent.
    pub(super) fn place(&self, session: &Session, seq: i64) -> Place {
        match &self.session {
            Some(current) if current.id == session.id => {
                if seq <= self.seq {
                    Place::Sent
                } else if self.seq.checked_add(1) == Some(seq) {
                    Place::Next
                } else {
                    Place::Gap
                }
            }
            Some(current) if !session.is_newer_than(current) => Place::Sent,
            // A newer session (or the first one): its first event follows on directly.
            _ if seq == 1 => Place::Next,
            _ => Place::Gap,
        }
    }

    /// Whether exactly everything up to the tail's last event (`head`) was sent.
    pub(super) fn is_at(&self, head: Option<&(Arc<Session>, i64)>) -> bool {
        match (head, &self.session) {
            (None, None) => true,
            (Some((session, seq)), Some(current)) => session.id == current.id && *seq == self.seq,
            _ => false,
        }
    }

    /// The cursor of the terminal `complete` event: the last event's plus the mark.
    pub(super) fn complete_cursor(&self) -> Cursor {
        Cursor {
            session: self.session.as_ref().map(|s| s.id.clone()),
            seq: self.seq,
            complete: true,
        }
    }

    /// What a message received from the tail asks of a live stream at this point.
    pub(super) fn on_live(&self, received: &Result<Live, RecvError>) -> OnLive {
        match received {
            Ok(Live::Event(event)) => match self.place(&event.session, event.seq) {
                Place::Next => OnLive::Send,
                Place::Sent => OnLive::Skip,
                Place::Gap => OnLive::CatchUp,
            },
            Ok(Live::Advanced { session, seq }) => match self.place(session, *seq) {
                Place::Sent => OnLive::Skip,
                Place::Next | Place::Gap => OnLive::CatchUp,
            },
            Ok(Live::Complete { head, .. }) if self.is_at(head.as_ref()) => OnLive::Complete,
            Ok(Live::Complete { .. }) | Err(RecvError::Lagged(_)) => OnLive::CatchUp,
            Err(RecvError::Closed) => OnLive::Closed,
        }
    }
}

/// Whether a `complete` cursor has nothing left to receive, so the request gets `204`: the task
/// is still not `InProgress` and nothing exists past the cursor.
pub(crate) fn already_complete(cursor: &Cursor, position: &TaskPosition) -> bool {
    cursor.complete && !position.in_progress() && nothing_past(cursor, position)
}

/// Whether nothing is stored past the cursor: it is at the end of the latest session (or there
/// is no session and it names none).
pub(super) fn nothing_past(cursor: &Cursor, position: &TaskPosition) -> bool {
    match (&position.head, &cursor.session) {
        (None, None) => true,
        (Some((session, last_seq)), Some(id)) => session.id == *id && cursor.seq >= *last_seq,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fixtures::{position, session};
    use crate::live::tail::LiveEvent;

    fn at(session: &Arc<Session>, seq: i64) -> Sent {
        Sent {
            session: Some(session.clone()),
            seq,
        }
    }

    fn cursor(session: Option<&str>, seq: i64, complete: bool) -> Cursor {
        Cursor {
            session: session.map(str::to_owned),
            seq,
            complete,
        }
    }

    fn event(session: &Arc<Session>, seq: i64) -> Result<Live, RecvError> {
        Ok(Live::Event(Arc::new(LiveEvent {
            session: session.clone(),
            seq,
            encoded: crate::wire::event::encode("", "x", ""),
            tagged: std::sync::OnceLock::new(),
            notified_at: None,
        })))
    }

    #[test]
    fn a_cursor_of_the_latest_session_resumes_right_after_it() {
        let s1 = session("s1", 1);
        let latest = position(true, Some((&s1, 10)));
        assert_eq!(
            Sent::start(&latest, Some(&cursor(Some("s1"), 4, false))),
            at(&s1, 4)
        );
    }

    #[test]
    fn no_cursor_or_another_sessions_cursor_starts_the_latest_session_from_its_beginning() {
        let s1 = session("s1", 1);
        let latest = position(true, Some((&s1, 10)));
        assert_eq!(Sent::start(&latest, None), at(&s1, 0));
        assert_eq!(
            Sent::start(&latest, Some(&cursor(Some("old"), 4, false))),
            at(&s1, 0)
        );
        assert_eq!(
            Sent::start(&latest, Some(&cursor(None, 0, true))),
            at(&s1, 0)
        );
    }

    #[test]
    fn a_cursor_past_the_end_is_held_at_the_end() {
        let s1 = session("s1", 1);
        let latest = position(true, Some((&s1, 10)));
        assert_eq!(
            Sent::start(&latest, Some(&cursor(Some("s1"), 99, false))),
            at(&s1, 10)
        );
    }

    #[test]
    fn a_task_without_a_session_starts_nowhere() {
        let none = position(true, None);
        assert_eq!(
            Sent::start(&none, Some(&cursor(Some("s1"), 3, false))),
            Sent::default()
        );
    }

    #[test]
    fn a_newer_session_is_followed_from_its_beginning_and_an_older_one_is_not() {
        let (s1, s2) = (session("s1", 1), session("s2", 2));
        let mut sent = at(&s1, 5);
        sent.follow_latest(&position(true, Some((&s1, 9))));
        assert_eq!(sent, at(&s1, 5));
        sent.follow_latest(&position(true, Some((&s2, 9))));
        assert_eq!(sent, at(&s2, 0));
        sent.follow_latest(&position(true, Some((&s1, 20))));
        assert_eq!(sent, at(&s2, 0));
    }

    #[test]
    fn a_live_event_is_next_already_sent_or_a_gap() {
        let (s1, s2, s0) = (session("s1", 1), session("s2", 2), session("s0", 0));
        let sent = at(&s1, 5);
        assert_eq!(sent.place(&s1, 6), Place::Next);
        assert_eq!(sent.place(&s1, 5), Place::Sent);
        assert_eq!(sent.place(&s1, 1), Place::Sent);
        assert_eq!(sent.place(&s1, 7), Place::Gap);
        assert_eq!(
            sent.place(&s2, 1),
            Place::Next,
            "a newer session starts at 1"
        );
        assert_eq!(sent.place(&s2, 2), Place::Gap);
        assert_eq!(sent.place(&s0, 9), Place::Sent, "an older session is over");
        assert_eq!(Sent::default().place(&s1, 1), Place::Next);
        assert_eq!(Sent::default().place(&s1, 3), Place::Gap);
        assert_eq!(at(&s1, i64::MAX).place(&s1, i64::MAX), Place::Sent);
    }

    #[test]
    fn live_messages_decide_send_skip_catch_up_or_complete() {
        let s1 = session("s1", 1);
        let sent = at(&s1, 5);
        assert_eq!(sent.on_live(&event(&s1, 6)), OnLive::Send);
        assert_eq!(sent.on_live(&event(&s1, 3)), OnLive::Skip);
        assert_eq!(sent.on_live(&event(&s1, 8)), OnLive::CatchUp);
        let advanced = |seq| {
            Ok(Live::Advanced {
                session: s1.clone(),
                seq,
            })
        };
        assert_eq!(sent.on_live(&advanced(5)), OnLive::Skip);
        assert_eq!(sent.on_live(&advanced(6)), OnLive::CatchUp);
        assert_eq!(sent.on_live(&advanced(9)), OnLive::CatchUp);
        assert_eq!(sent.on_live(&Err(RecvError::Lagged(3))), OnLive::CatchUp);
        assert_eq!(sent.on_live(&Err(RecvError::Closed)), OnLive::Closed);
    }

    #[test]
    fn complete_only_when_level_with_the_tail() {
        let s1 = session("s1", 1);
        let complete = |head: Option<(&Arc<Session>, i64)>| {
            Ok(Live::Complete {
                head: head.map(|(s, seq)| (s.clone(), seq)),
                status: None,
            })
        };
        assert_eq!(
            at(&s1, 5).on_live(&complete(Some((&s1, 5)))),
            OnLive::Complete
        );
        assert_eq!(
            at(&s1, 4).on_live(&complete(Some((&s1, 5)))),
            OnLive::CatchUp
        );
        assert_eq!(Sent::default().on_live(&complete(None)), OnLive::Complete);
        assert_eq!(
            Sent::default().on_live(&complete(Some((&s1, 1)))),
            OnLive::CatchUp
        );
        assert_eq!(at(&s1, 0).on_live(&complete(None)), OnLive::CatchUp);
    }

    #[test]
    fn the_complete_cursor_carries_the_last_event_and_the_mark() {
        let s1 = session("s1", 1);
        assert_eq!(at(&s1, 5).complete_cursor(), cursor(Some("s1"), 5, true));
        assert_eq!(Sent::default().complete_cursor(), cursor(None, 0, true));
    }

    #[test]
    fn a_complete_cursor_is_done_only_while_nothing_is_past_it_and_the_task_stays_ended() {
        let s1 = session("s1", 1);
        let ended = position(false, Some((&s1, 5)));
        assert!(already_complete(&cursor(Some("s1"), 5, true), &ended));
        assert!(
            !already_complete(&cursor(Some("s1"), 4, true), &ended),
            "more to read"
        );
        assert!(
            !already_complete(&cursor(Some("s1"), 5, false), &ended),
            "no mark"
        );
        assert!(
            !already_complete(&cursor(Some("s0"), 5, true), &ended),
            "another session"
        );
        let running = position(true, Some((&s1, 5)));
        assert!(
            !already_complete(&cursor(Some("s1"), 5, true), &running),
            "back in progress"
        );
        assert!(already_complete(
            &cursor(None, 0, true),
            &position(false, None)
        ));
        assert!(
            !already_complete(&cursor(None, 0, true), &ended),
            "a session appeared"
        );
    }
}
