//! How long a test waits for anything, and waiting for a condition with that deadline.

use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// Waits until `condition` holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
