//! The sessions a run writes to and streams from: one task with one session each, named so
//! that runs sharing a database stay apart.

/// One stream's source: a task with one session, and its nchan channel.
#[derive(Debug, Clone)]
pub struct Session {
    /// `tasks.id`.
    pub task: String,
    /// `agent_sessions.id`.
    pub session: String,
}

impl Session {
    /// The `count` sessions of a run: task `<prefix>t<k>`, session `<prefix>t<k>-s1` (the
    /// prefix keeps runs apart in a database that is not the benchmark's own).
    pub fn many(prefix: &str, count: usize) -> Vec<Session> {
        (0..count)
            .map(|k| Session {
                task: format!("{prefix}t{k}"),
                session: format!("{prefix}t{k}-s1"),
            })
            .collect()
    }
}
