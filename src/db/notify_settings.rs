//! The notification settings the triggers sign with (`taskstream_notify_settings` in
//! `schema.sql`): the MAC key, which only the owner and `taskstream_server` may read, and the
//! payload mode, which `taskstream migrate --notify-payload` sets.

use std::fmt;

use tokio_postgres::Client;

/// What an event's notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadMode {
    /// The event itself when it fits (under 8000 bytes), else its address: live delivery
    /// costs no query. The default.
    Event,
    /// Only the event's address (task, session, seq): every LISTENer reads payloads, so this
    /// keeps agent events from roles that may connect but must not read them. Each event then
    /// costs one read per server instance (not per client).
    Address,
}

impl PayloadMode {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Event => "event",
            PayloadMode::Address => "address",
        }
    }

    fn from_stored(text: &str) -> Option<PayloadMode> {
        match text {
            "event" => Some(PayloadMode::Event),
            "address" => Some(PayloadMode::Address),
            _ => None,
        }
    }
}

impl fmt::Display for PayloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings as a server reads them at start (and at each LISTEN reconnection).
pub(crate) struct NotifySettings {
    /// The HMAC-SHA256 key of every notification.
    pub(crate) key: Vec<u8>,
    /// What event notifications carry. Servers handle both forms whatever it says; it is read
    /// to be logged.
    pub(crate) payload: Option<PayloadMode>,
}

impl fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySettings")
            .field("key", &"[redacted]")
            .field("payload", &self.payload)
            .finish()
    }
}

/// Reads the key and the payload mode (needs `taskstream_server` or ownership).
pub(crate) async fn read(client: &Client) -> Result<NotifySettings, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT mac_key, payload FROM taskstream_notify_settings",
            &[],
        )
        .await?;
    let payload: &str = row.get(1);
    Ok(NotifySettings {
        key: row.get(0),
        payload: PayloadMode::from_stored(payload),
    })
}

/// Sets the payload mode (needs ownership); returns the mode it replaced.
pub(crate) async fn set_payload(
    client: &Client,
    mode: PayloadMode,
) -> Result<Option<PayloadMode>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH old AS (SELECT payload FROM taskstream_notify_settings)
             UPDATE taskstream_notify_settings SET payload = $1
             RETURNING (SELECT payload FROM old)",
            &[&mode.as_str()],
        )
        .await?;
    let old: &str = row.get(0);
    Ok(PayloadMode::from_stored(old))
}
