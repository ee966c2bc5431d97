//! The soak's fault schedule: fixed, the same in every run of the same length, so that a run
//! can be repeated and the 30-second CI run always injects every kind of fault once. Faults
//! never overlap: each starts well after the one before has ended on a slow machine, and if one
//! runs late the next simply waits for it.

use std::time::Duration;

/// One cycle of the schedule; a run repeats it as often as it fits.
pub const CYCLE: Duration = Duration::from_secs(30);

/// How long the held transaction stays open.
pub const HOLD: Duration = Duration::from_secs(3);

/// A fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// A third of the clients cut their connection in the middle of a frame.
    CutClients,
    /// Every instance's LISTEN backend is ended with `pg_terminate_backend`.
    KillListenBackend,
    /// A writer's transaction on the hot task stays open for [`HOLD`].
    HoldTransaction,
    /// One instance is killed with SIGKILL and started again.
    KillInstance,
    /// One instance is drained with SIGTERM and started again.
    DrainInstance,
    /// PostgreSQL is stopped (fast shutdown) and started again.
    RestartPostgres,
}

impl Fault {
    /// Every kind, in cycle order.
    pub const ALL: [Fault; 6] = [
        Fault::CutClients,
        Fault::KillListenBackend,
        Fault::HoldTransaction,
        Fault::KillInstance,
        Fault::DrainInstance,
        Fault::RestartPostgres,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::CutClients => "clients cut mid-frame",
            Fault::KillListenBackend => "LISTEN backend terminated",
            Fault::HoldTransaction => "writer transaction held open 3 s",
            Fault::KillInstance => "instance SIGKILLed and restarted",
            Fault::DrainInstance => "instance drained (SIGTERM) and restarted",
            Fault::RestartPostgres => "PostgreSQL restarted",
        }
    }

    /// When it happens in each cycle (seconds from the cycle's start): a few quiet seconds
    /// between faults, for the latency between faults.
    fn offset(self) -> Duration {
        Duration::from_secs(match self {
            Fault::CutClients => 2,
            Fault::KillListenBackend => 5,
            Fault::HoldTransaction => 8,
            Fault::KillInstance => 13,
            Fault::DrainInstance => 18,
            Fault::RestartPostgres => 23,
        })
    }
}

/// Every fault of a run that writes for `duration`, with its time from the start.
pub fn schedule(duration: Duration) -> Vec<(Duration, Fault)> {
    let mut out = Vec::new();
    let mut cycle = Duration::ZERO;
    while cycle < duration {
        for fault in Fault::ALL {
            let at = cycle + fault.offset();
            if at < duration {
                out.push((at, fault));
            }
        }
        cycle += CYCLE;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_seconds_inject_every_fault_once_in_order() {
        let faults = schedule(Duration::from_secs(30));
        let kinds: Vec<Fault> = faults.iter().map(|(_, f)| *f).collect();
        assert_eq!(kinds, Fault::ALL);
        assert!(faults.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn ten_minutes_repeat_the_cycle_twenty_times() {
        let faults = schedule(Duration::from_secs(600));
        assert_eq!(faults.len(), 20 * Fault::ALL.len());
        assert_eq!(
            faults[6],
            (CYCLE + Duration::from_secs(2), Fault::CutClients)
        );
        assert!(faults.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_short_run_gets_the_faults_that_fit() {
        let faults = schedule(Duration::from_secs(6));
        assert_eq!(
            faults.iter().map(|(_, f)| *f).collect::<Vec<_>>(),
            [Fault::CutClients, Fault::KillListenBackend]
        );
    }
}
