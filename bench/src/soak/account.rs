//! The soak's ledger: what every client received, against what the table holds. A client must
//! have received exactly its task's rows, in `seq` order, each once, and the task's `complete`.
//! The table is the truth, not the writers' belief: an insert whose commit a fault cut off
//! may or may not be there, and either is fine as long as the clients agree with the table.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::watcher::WatcherReport;
use crate::ledger::Tally;
use crate::payload;
use crate::pg::pg_error;

/// Per task, the event indexes of its rows in `seq` order.
pub type Truth = HashMap<String, Vec<u64>>;

/// The ledger over all clients.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Account {
    /// Clients checked.
    pub clients: usize,
    /// Their events, added up (received, lost, duplicated).
    pub tally: Tally,
    /// Clients that never received their task's `complete`.
    pub not_completed: usize,
    /// Events received that the table does not hold at all.
    pub phantom: u64,
}

impl Account {
    /// Whether every client received exactly its task's rows and its `complete`.
    pub fn is_exact(&self) -> bool {
        self.tally.is_exact() && self.not_completed == 0 && self.phantom == 0
    }
}

/// Reads every task's rows; fails if a session's `seq` has a hole (the schema promises none).
pub async fn truth(client: &Client) -> Result<Truth, String> {
    let rows = client
        .query(
            "SELECT task_id, seq, content FROM agent_events ORDER BY task_id, seq",
            &[],
        )
        .await
        .map_err(|e| format!("read the table: {}", pg_error(&e)))?;
    let mut truth = Truth::new();
    for row in rows {
        let task: String = row.get(0);
        let seq: i64 = row.get(1);
        let content: &str = row.get(2);
        let index = payload::parse_content(content).ok_or_else(|| {
            format!("task {task} seq {seq}: content {content:?} is not the soak's")
        })?;
        let events = truth.entry(task.clone()).or_default();
        if seq != events.len() as i64 + 1 {
            return Err(format!(
                "task {task}: seq {seq} follows {} (a hole in the session)",
                events.len()
            ));
        }
        events.push(index);
    }
    Ok(truth)
}

/// Checks every client against the table.
pub fn check(truth: &Truth, clients: &[WatcherReport]) -> Account {
    let mut account = Account::default();
    for client in clients {
        let rows = truth.get(&client.task).map_or(&[][..], Vec::as_slice);
        let (tally, phantom) = tally(rows, &client.received);
        account.clients += 1;
        account.tally.add(tally);
        account.phantom += phantom;
        account.not_completed += usize::from(!client.completed);
    }
    account
}

/// One client's account: `rows` is the table (unique indexes in `seq` order), `received` what
/// the client got. Returns the tally and the events the table does not hold.
fn tally(rows: &[u64], received: &[u64]) -> (Tally, u64) {
    let position: HashMap<u64, usize> = rows.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut next = 0usize;
    let mut tally = Tally {
        received: received.len() as u64,
        ..Tally::default()
    };
    let mut phantom = 0;
    for index in received {
        match position.get(index) {
            None => phantom += 1,
            Some(&at) if at == next => next += 1,
            Some(&at) if at > next => {
                tally.lost += (at - next) as u64;
                next = at + 1;
            }
            Some(_) => tally.duplicated += 1,
        }
    }
    tally.lost += (rows.len() - next) as u64;
    (tally, phantom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_rows_in_order_is_exact() {
        let (t, phantom) = tally(&[0, 1, 1_000_000_000, 2], &[0, 1, 1_000_000_000, 2]);
        assert_eq!((t.received, t.lost, t.duplicated, phantom), (4, 0, 0, 0));
    }

    #[test]
    fn a_missing_row_a_repeat_and_a_stranger_are_counted() {
        assert_eq!(tally(&[0, 1, 2], &[0, 2]).0.lost, 1);
        assert_eq!(tally(&[0, 1, 2], &[0, 1]).0.lost, 1, "the missing tail");
        assert_eq!(tally(&[0, 1, 2], &[0, 1, 1, 2]).0.duplicated, 1);
        assert_eq!(tally(&[0, 1], &[0, 1, 7]).1, 1);
        let (late, _) = tally(&[0, 1, 2], &[0, 2, 1]);
        assert_eq!((late.lost, late.duplicated), (1, 1));
    }

    #[test]
    fn an_index_the_writer_skipped_after_a_failed_insert_is_no_loss() {
        // The writer's insert of index 2 failed: the table holds 0, 1, 3.
        let (t, _) = tally(&[0, 1, 3], &[0, 1, 3]);
        assert!(t.is_exact());
    }
}
