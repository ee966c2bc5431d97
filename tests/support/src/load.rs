//! The size of the load tests, which a slow machine may divide.

/// A load test's count `n`, divided by `TASKSTREAM_LOAD_DIVISOR` when set (for slow machines),
/// but never below 100 so the mechanism is still exercised.
pub fn load_count(n: usize) -> usize {
    let divisor: usize = std::env::var("TASKSTREAM_LOAD_DIVISOR")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    (n / divisor.max(1)).max(100)
}
