//! How often a hint may wake the poll early. A hint is an authentic notification that names
//! nothing precise (`{}`) or one that failed its MAC: anyone who can connect may send those by
//! the thousand, so together they cost at most one extra poll per poll interval. The regular
//! tick polls every watched task anyway, so a hint that is not let through loses nothing. Pure.

use std::time::{Duration, Instant};

/// Lets a hint through at most once per interval.
#[derive(Debug)]
pub(crate) struct HintGate {
    interval: Duration,
    /// No hint is let through before this.
    closed_until: Option<Instant>,
}

impl HintGate {
    pub(crate) fn new(interval: Duration) -> HintGate {
        HintGate {
            interval,
            closed_until: None,
        }
    }

    /// Whether a hint at `now` polls at once (and closes the gate for an interval).
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        if self.closed_until.is_some_and(|until| now < until) {
            return false;
        }
        self.closed_until = now.checked_add(self.interval);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hint_per_interval_gets_through() {
        let interval = Duration::from_millis(500);
        let mut gate = HintGate::new(interval);
        let start = Instant::now();
        assert!(gate.admit(start));
        for ms in [0, 1, 250, 499] {
            assert!(!gate.admit(start + Duration::from_millis(ms)), "{ms} ms");
        }
        assert!(gate.admit(start + interval));
        assert!(!gate.admit(start + interval + Duration::from_millis(1)));
        assert!(gate.admit(start + interval * 5));
    }
}
