//! Which tasks this instance watches, as the hub announces it: a tail starts with a task's first
//! client and ends with its last. In bus mode the NATS subscriptions follow these changes
//! ([`crate::live::bus`]); the hub announces them without knowing who listens.

use std::sync::Arc;

use tokio::sync::mpsc;

/// A change of what this instance watches.
#[derive(Debug, PartialEq)]
pub(crate) enum Interest {
    /// A tail started: the task has its first client here.
    Watch(Arc<str>),
    /// The tail ended: the task's last client here left.
    Unwatch(Arc<str>),
}

/// The hub's end. Unbounded because the hub announces under its lock and must never wait, and a
/// change left out would leave a subscription wrong for as long as the tail lives; there is one
/// message per tail started or ended, and the other end only turns each into a subscription.
#[derive(Debug, Clone)]
pub(crate) struct Announcer(mpsc::UnboundedSender<Interest>);

/// The end that follows the changes, in the order the hub made them.
pub(crate) type Changes = mpsc::UnboundedReceiver<Interest>;

/// A new announcer and the changes it announces.
pub(crate) fn channel() -> (Announcer, Changes) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Announcer(sender), receiver)
}

impl Announcer {
    /// Announces a change; nobody following any more (shutdown) is not an error.
    pub(crate) fn announce(&self, change: Interest) {
        let _ = self.0.send(change);
    }
}
