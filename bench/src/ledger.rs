//! The per-client ledger: which events of its session a client received, checked against what
//! the writer committed (and the table holds). Loss and duplication must both be zero.
//!
//! A stream delivers its session in commit order, and the writer numbers each session's events
//! 0, 1, 2, … in commit order, so a client must see exactly 0..committed with no gap and no
//! repeat, across reconnects too. Any other sequence is a failure: a jump forward counts the
//! skipped events as lost, a step back counts a duplicate (an event that arrives late, after a
//! later one, shows up as both), and events never received by the end count as lost.

/// One client's account of its session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    /// The index expected next.
    next: u64,
    /// Events received (including duplicates).
    received: u64,
    /// Events skipped over.
    lost: u64,
    /// Events received at or below an index already seen.
    duplicated: u64,
}

/// A client's final account.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Events received (including duplicates).
    pub received: u64,
    /// Events never received, or received out of order.
    pub lost: u64,
    /// Events received twice, or out of order.
    pub duplicated: u64,
}

impl Ledger {
    /// Records event `index`.
    pub fn observe(&mut self, index: u64) {
        self.received += 1;
        if index == self.next {
            self.next += 1;
        } else if index > self.next {
            self.lost += index - self.next;
            self.next = index + 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Whether every one of `committed` events has arrived (or been skipped).
    pub fn reached(&self, committed: u64) -> bool {
        self.next >= committed
    }

    /// The final account once the writer committed `committed` events to this session.
    pub fn tally(&self, committed: u64) -> Tally {
        Tally {
            received: self.received,
            lost: self.lost + committed.saturating_sub(self.next),
            duplicated: self.duplicated + self.next.saturating_sub(committed),
        }
    }
}

impl Tally {
    /// Adds another client's account.
    pub fn add(&mut self, other: Tally) {
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
    }

    /// Whether nothing was lost or duplicated.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(indexes: &[u64]) -> Ledger {
        let mut ledger = Ledger::default();
        indexes.iter().for_each(|&i| ledger.observe(i));
        ledger
    }

    #[test]
    fn an_exact_sequence_is_exact() {
        let l = ledger(&[0, 1, 2, 3]);
        assert!(l.reached(4));
        assert_eq!(
            l.tally(4),
            Tally {
                received: 4,
                lost: 0,
                duplicated: 0
            }
        );
        assert!(l.tally(4).is_exact());
    }

    #[test]
    fn a_gap_is_lost_and_a_repeat_is_duplicated() {
        assert_eq!(ledger(&[0, 2, 3]).tally(4).lost, 1);
        assert_eq!(ledger(&[0, 1, 1, 2]).tally(3).duplicated, 1);
    }

    #[test]
    fn a_late_event_counts_as_both() {
        let tally = ledger(&[0, 2, 1]).tally(3);
        assert_eq!((tally.lost, tally.duplicated), (1, 1));
    }

    #[test]
    fn the_missing_tail_is_lost_and_events_past_the_committed_are_duplicates() {
        assert!(!ledger(&[0, 1]).reached(5));
        assert_eq!(ledger(&[0, 1]).tally(5).lost, 3);
        assert_eq!(ledger(&[0, 1, 2]).tally(2).duplicated, 1);
    }
}
