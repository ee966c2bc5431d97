//! The shutdown signal: passed to whatever must stop, never a global.

use tokio::sync::watch;

/// Starts a shutdown. Dropping the last trigger releases whoever waits on the signal (nothing
/// could start the shutdown any more, so its owner has finished), but it does not count as a
/// shutdown: [`Shutdown::is_triggered`] stays false.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once a shutdown has started. Cheap to clone: one per stream task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, untriggered signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Starts the shutdown (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the shutdown starts (at once if it has). Also resolves if every trigger is
    /// gone, since nothing could start it any more and the owner has finished.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|triggered| *triggered).await;
    }
}
