//! Stopping a server process the benchmark started (taskstream, or nginx's master): politely
//! first, so that it can close its connections, and by force if it does not exit in time.

use std::process::Child;
use std::time::{Duration, Instant};

/// Sends SIGTERM, waits up to `timeout`, then kills.
pub fn terminate(child: &mut Child, timeout: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
