//! Ids that no task can have (control characters after percent-decoding): refused with `400`
//! before they reach PostgreSQL or the hub, so that they never stop delivery for anyone else.

use std::time::Duration;

use support::ledger::{contents, numbered};
use support::server::{TestServer, fast_config};
use taskstream::Config;

use crate::{request, status_of};

/// Requests whose task id or `?before=` holds a control character once decoded.
const HOSTILE: [&str; 6] = [
    "/tasks/a%00/events/stream",
    "/tasks/%00/events/stream",
    "/tasks/a%0D%0Ainjected/events/stream",
    "/tasks/%1B%5B31m/events/stream",
    "/tasks/a%00",
    "/?before=a%00",
];

/// Under `--notify false` the poll is the only delivery path, and it is one batched query for
/// every watched task: a NUL id in that batch would fail it for all of them. While such requests
/// keep arriving, each gets `400`, no tail is started for them, and another task's stream goes
/// on receiving every event.
#[tokio::test]
async fn control_characters_in_ids_never_stop_other_streams() {
    let server = TestServer::start(Config {
        notify: false,
        poll_interval: Duration::from_millis(100),
        ..fast_config()
    })
    .await;
    server.task("good", "InProgress").await;
    let mut good = server.stream("good").await;
    assert_eq!(good.status, 200);
    let mut received = Vec::new();
    for i in 0..10 {
        for target in HOSTILE {
            let status = status_of(server.addr(), &request("GET", target, &[])).await;
            assert_eq!(status, Some(400), "{target}");
        }
        server
            .event("good", "s1", "assistant", &format!("e {i}"))
            .await;
        received.extend(good.take(1).await);
        assert_eq!(
            server.handle.tail_count(),
            1,
            "only the good task is watched"
        );
    }
    assert_eq!(contents(&received), numbered("e", 0..10));
}
