//! Stopping a server process the benchmark started (taskstream, or nginx's master): politely
//! first, so that it can close its connections, and by force if it does not exit in time.

use std::process::Child;
use std::time::{Duration, Instant};

/// Sends SIGTERM, waits up to `timeout`, then kills.
pub fn terminate(child: &mut Child, timeout: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if signal_and_wait(child, timeout).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends SIGTERM and waits up to `timeout` for the process to exit: how long it took, `None` if
/// it is still running (the soak's drain fault reports the time; [`terminate`] kills then).
pub fn signal_and_wait(child: &mut Child, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    while started.elapsed() < timeout {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
