//! The ledger: what a client must receive (the committed rows, or numbered contents), a client
//! that follows a task across every interruption, and assertions that a client received
//! exactly that, naming the first event that differs when it did not.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::http::Response;
use crate::sse_parser::SseEvent;
use crate::wait::WAIT;

/// How long a following client keeps trying before it gives up.
pub const FOLLOW_DEADLINE: Duration = Duration::from_secs(60);

/// The `data.content` of each event, for compact assertions.
pub fn contents(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `prefix i` for each `i` of `range`, in order.
pub fn numbered(prefix: &str, range: Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// Asserts that `events` are exactly `expected` contents, in order, once each.
pub fn assert_ledger(events: &[SseEvent], expected: &[String], who: &str) {
    assert_same(&contents(events), expected, who);
}

/// Follows `task`'s stream like a well-behaved client would, across every interruption: when
/// the stream ends without `complete`, when the connection is refused or cut, or on `503`, it
/// waits a little and resumes from its last cursor (on the next address of `addrs`, round
/// robin). Returns every event received before `complete`, in order.
pub async fn follow(addrs: &[SocketAddr], task: &str, cursor: Option<String>) -> Vec<SseEvent> {
    let mut received = Vec::new();
    let path = format!("/tasks/{task}/events/stream");
    follow_path(addrs, &path, cursor, |event| received.push(event)).await;
    received
}

/// Follows the stream at `path` as [`follow`] does, handing each event before `complete` to
/// `on_event`; a `204` (a cursor with nothing left) ends it too.
pub async fn follow_path(
    addrs: &[SocketAddr],
    path: &str,
    mut cursor: Option<String>,
    mut on_event: impl FnMut(SseEvent),
) {
    let deadline = Instant::now() + FOLLOW_DEADLINE;
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "{path}: no complete after {attempt} attempts"
        );
        let addr = addrs[attempt % addrs.len()];
        let headers: Vec<(&str, &str)> = cursor
            .iter()
            .map(|c| ("last-event-id", c.as_str()))
            .collect();
        match Response::try_request("GET", addr, path, &headers).await {
            Ok(mut response) if response.status == 200 => {
                while let Some(event) = response.next_within(WAIT).await {
                    cursor = Some(event.id.clone());
                    if event.event == "complete" {
                        return;
                    }
                    on_event(event);
                }
            }
            Ok(response) if response.status == 204 => return,
            Ok(response) if response.status == 503 => {}
            Ok(response) => panic!("{path}: unexpected status {}", response.status),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50 + 10 * (attempt as u64 % 10))).await;
    }
}

/// The task's latest session as a client must see it: `cursor content` per committed row, in
/// seq order.
pub async fn committed(db: &Client, task: &str) -> Vec<String> {
    let rows = db
        .query(
            "SELECT e.session_id, e.seq, e.content FROM agent_events e
             WHERE e.session_id = (SELECT id FROM agent_sessions WHERE task_id = $1
                                   ORDER BY started_at DESC, id DESC LIMIT 1)
             ORDER BY e.seq",
            &[&task],
        )
        .await
        .expect("read the ledger");
    rows.iter()
        .map(|row| {
            let session: String = row.get(0);
            let seq: i64 = row.get(1);
            let content: String = row.get(2);
            format!("{} {content}", cursor(&session, seq))
        })
        .collect()
}

/// The cursor the server gives event `seq` of `session`.
pub fn cursor(session: &str, seq: i64) -> String {
    let session = Some(session.to_owned());
    taskstream::wire::cursor::Cursor {
        session,
        seq,
        complete: false,
    }
    .to_string()
}

/// Received events in the same form as [`committed`].
pub fn ledger_of(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.id,
                e.json()["content"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Asserts that a client received exactly the committed rows: in order, no gap, no duplicate.
pub fn assert_exact(received: &[SseEvent], committed: &[String], who: &str) {
    assert_same(&ledger_of(received), committed, who);
}

/// Asserts that `got` is `expected`. When it is not, says the counts, how many are missing or
/// duplicated, and the first position where they differ with what each has there.
pub fn assert_same(got: &[String], expected: &[String], who: &str) {
    let longer = got.len().max(expected.len());
    let Some(at) = (0..longer).find(|&i| got.get(i) != expected.get(i)) else {
        return;
    };
    let missing = expected.iter().filter(|e| !got.contains(e)).count();
    let mut seen = HashSet::new();
    let duplicated = got.iter().filter(|e| !seen.insert(*e)).count();
    panic!(
        "{who}: got {} events, expected {} ({missing} missing, {duplicated} duplicated); \
         first difference at index {at}: expected {}, got {}",
        got.len(),
        expected.len(),
        shown(expected.get(at)),
        shown(got.get(at)),
    );
}

/// An event of a ledger for a failure message; `None` is past its end.
fn shown(event: Option<&String>) -> String {
    event.map_or_else(|| "nothing (the end)".to_owned(), |e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(events: &[&str]) -> Vec<String> {
        events.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn same_ledgers_pass() {
        assert_same(&ledger(&["a", "b"]), &ledger(&["a", "b"]), "client");
    }

    #[test]
    #[should_panic(
        expected = "client: got 3 events, expected 3 (1 missing, 1 duplicated); \
                               first difference at index 2: expected \"c\", got \"b\""
    )]
    fn a_duplicate_is_named_where_it_is() {
        assert_same(
            &ledger(&["a", "b", "b"]),
            &ledger(&["a", "b", "c"]),
            "client",
        );
    }

    #[test]
    #[should_panic(expected = "first difference at index 1: expected \"b\", got \"c\"")]
    fn a_gap_is_named_where_it_is() {
        assert_same(&ledger(&["a", "c"]), &ledger(&["a", "b", "c"]), "client");
    }

    #[test]
    #[should_panic(expected = "first difference at index 2: expected nothing (the end), got \"c\"")]
    fn an_extra_event_at_the_end_is_named() {
        assert_same(&ledger(&["a", "b", "c"]), &ledger(&["a", "b"]), "client");
    }
}
