//! A LISTEN connection as any login may open one: it hears every payload on taskstream's
//! event channel (what the trust model says anyone who can connect can read).

use std::future::poll_fn;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Connects to `url`, LISTENs on `taskstream_events`, and hands over every payload heard.
pub async fn eavesdropper(url: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let (sender, payloads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send(notification.payload().to_owned());
            }
        }
    });
    client
        .batch_execute("LISTEN taskstream_events")
        .await
        .expect("anyone may LISTEN");
    (client, payloads)
}
