//! Notifications that cannot be forged: a login with neither taskstream role may NOTIFY on
//! taskstream's channels with any payload, including a copy of a real one with its content
//! changed, while clients stream. Clients still receive exactly the committed rows, the
//! forgeries are counted, and together they cost at most one extra poll per poll interval.

use std::time::Instant;

use support::ledger::contents;
use support::listener::eavesdropper;
use support::roles::login;
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use taskstream::metrics::QueryKind;

/// Every shape of forgery the issue names (content changed under a copied MAC, seq 0,
/// negative, `i64::MIN`, `i64::MAX`, wrong JSON types, huge strings, an unsigned `{}`, a status
/// change on the tasks channel, a real payload moved to the other channel), by `pg_notify` and
/// by `NOTIFY`, then a flood of a thousand: clients get exactly the committed rows in order,
/// each forgery is counted, and the poll runs at most once more per interval.
#[tokio::test]
async fn forged_notifications_deliver_nothing_and_cost_at_most_a_poll_per_interval() {
    let config = fast_config();
    let interval = config.poll_interval;
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "e0").await;
    let mut clients = [server.stream("t").await, server.stream("t").await];
    for client in &mut clients {
        assert_eq!(contents(&client.take(1).await), ["e0"]);
    }

    let forger_url = login(&server.url, &[]).await;
    let (forger, mut heard) = eavesdropper(&forger_url).await;
    server.event("t", "s1", "assistant", "e1").await;
    let real = tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("a payload within the wait")
        .expect("the real payload");
    assert!(
        real.contains(r#""c" : "e1""#),
        "anyone reads live payloads: {real}"
    );
    let (mac, json) = real.split_once('.').expect("<mac>.<json>");
    let next = json.replace(r#""q" : 2"#, r#""q" : 3"#);
    let (events, tasks) = ("taskstream_events", "taskstream_tasks");
    // (channel, payload, forged?): every shape the issue names, and authentic replays.
    let attempts: Vec<(&str, String, bool)> = vec![
        (
            events,
            format!("{mac}.{}", next.replace("e1", "FORGED")),
            true,
        ),
        (
            events,
            format!("{mac}.{}", json.replace("e1", "FORGED")),
            true,
        ),
        (events, next.replace("e1", "FORGED"), true),
        (events, json.replace(r#""q" : 2"#, r#""q" : 0"#), true),
        (events, json.replace(r#""q" : 2"#, r#""q" : -1"#), true),
        (
            events,
            json.replace(r#""q" : 2"#, &format!(r#""q" : {}"#, i64::MIN)),
            true,
        ),
        (
            events,
            json.replace(r#""q" : 2"#, &format!(r#""q" : {}"#, i64::MAX)),
            true,
        ),
        (
            events,
            format!("{mac}.{}", json.replace(r#""q" : 2"#, r#""q" : "3""#)),
            true,
        ),
        (
            events,
            format!("{mac}.{}", json.replace("\"t\" : \"t\"", "\"t\" : 5")),
            true,
        ),
        (events, format!("{mac}.{}", "x".repeat(7900)), true),
        (events, "{}".to_owned(), true),
        (events, "not json".to_owned(), true),
        (events, String::new(), true),
        (tasks, r#"{"k":"s","t":"t","st":"Done"}"#.to_owned(), true),
        (tasks, real.clone(), true),
        (events, real.clone(), false),
    ];
    let before_polls = server.handle.metrics().query_count(QueryKind::Positions);
    let started = Instant::now();
    let mut expected_forged = 0;
    for (channel, payload, forged) in &attempts {
        forger
            .execute("SELECT pg_notify($1, $2)", &[channel, payload])
            .await
            .expect("anyone may pg_notify");
        forger
            .batch_execute(&format!(
                "NOTIFY {channel}, '{}'",
                payload.replace('\'', "''")
            ))
            .await
            .expect("anyone may NOTIFY");
        expected_forged += if *forged { 2 } else { 0 };
    }
    forger
        .batch_execute(
            "SELECT pg_notify('taskstream_events', 'flood ' || i) FROM generate_series(1, 1000) i",
        )
        .await
        .expect("a flood");
    expected_forged += 1000;
    eventually("every forgery counted", || {
        server.handle.metrics().notifications_forged.get() == expected_forged
    })
    .await;
    let polls = server.handle.metrics().query_count(QueryKind::Positions) - before_polls;
    let intervals = started.elapsed().as_secs_f64() / interval.as_secs_f64();
    // The regular tick polls once per interval; forgeries add at most one more.
    assert!(
        polls as f64 <= 2.0 * intervals + 3.0,
        "{polls} polls in {intervals:.1} intervals for {expected_forged} forgeries"
    );

    for i in 2..5 {
        server.event("t", "s1", "assistant", &format!("e{i}")).await;
    }
    server.status("t", "Done").await;
    for client in &mut clients {
        let rest = client.until_complete().await;
        let (complete, events) = rest.split_last().expect("events, then complete");
        assert_eq!(complete.event, "complete");
        assert_eq!(contents(events), ["e1", "e2", "e3", "e4"]);
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["czE:2", "czE:3", "czE:4", "czE:5"]);
    }
}
