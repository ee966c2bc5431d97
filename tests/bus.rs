//! Bus mode (`--nats-url`) against a real `nats-server`: at most `--pg-listeners` instances
//! LISTEN, seats move to live instances when holders die, NATS outages fall back to LISTEN and
//! recover, every instance subscribes only to what it watches, and every client still gets
//! exactly the committed rows.
//!
//! Run with `cargo test --features nats --test bus`; needs `nats-server` (Debian package
//! `nats-server`), which each test starts on its own loopback port (see `support::nats`).

#![cfg(feature = "nats")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use support::child::ChildServer;
use support::cluster::{connect, empty_database, fresh_database};
use support::ledger::{assert_exact, assert_ledger, committed, follow, numbered};
use support::nats::{
    bus_config, listen_backends, seats_held, server_subscriptions, start_nats, start_nats_with,
};
use support::server::{TestServer, resume_elsewhere};
use support::sse_parser::SseEvent;
use support::wait::{WAIT, eventually};
use support::writer::{insert_event, insert_task, set_status};
use taskstream::Config;
use taskstream::metrics::BusMetrics;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// A poll so rare that it never runs in a test: what such an instance delivers live came
/// through NATS.
const NO_POLL: Duration = Duration::from_secs(3600);

fn bus(server: &TestServer) -> &BusMetrics {
    &server.handle.metrics().bus
}

/// Waits until `condition` holds, checking it with async reads.
async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a holder first, so that it takes the seat, then the others: which instance listens
/// is then known.
async fn holder_then_others(
    url: &str,
    holder: Config,
    others: Vec<Config>,
) -> (TestServer, Vec<TestServer>) {
    let holder = TestServer::start_on(holder, url.to_owned()).await;
    eventually("the first instance holds a seat", || {
        bus(&holder).pg_listener_seat.get() == 1
    })
    .await;
    let others = join_all(
        others
            .into_iter()
            .map(|config| TestServer::start_on(config, url.to_owned())),
    )
    .await;
    (holder, others)
}

/// Ends task `t`, then checks that it has `rows` committed rows and that every follower got
/// exactly them.
async fn complete_and_check(db: &Client, rows: usize, followers: Vec<JoinHandle<Vec<SseEvent>>>) {
    set_status(db, "t", "Done").await;
    let committed = committed(db, "t").await;
    assert_eq!(committed.len(), rows);
    for (n, received) in join_all(followers).await.into_iter().enumerate() {
        assert_exact(
            &received.expect("follower"),
            &committed,
            &format!("client {n}"),
        );
    }
}

/// Samples the number of LISTEN backends until stopped; returns the most it saw.
fn sample_listeners(url: String, stop: Arc<AtomicBool>) -> JoinHandle<i64> {
    tokio::spawn(async move {
        let db = connect(&url).await;
        let most = AtomicI64::new(0);
        while !stop.load(Ordering::Relaxed) {
            most.fetch_max(listen_backends(&db).await, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        most.load(Ordering::Relaxed)
    })
}

/// Five instances with `--pg-listeners 2`: two hold seats and LISTEN, PostgreSQL never shows
/// more than two LISTEN backends while three writers write, and every client of every instance
/// gets exactly the committed rows of its task; the instances that do not LISTEN got them
/// through NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_instances_two_listeners_and_exact_ledgers() {
    let nats = start_nats().await;
    let url = empty_database().await;
    let config = bus_config(&nats, 2);
    let instances =
        join_all((0..5).map(|_| TestServer::start_on(config.clone(), url.clone()))).await;
    eventually("two seats held, every instance on the bus", || {
        let sum =
            |gauge: fn(&BusMetrics) -> i64| instances.iter().map(|i| gauge(bus(i))).sum::<i64>();
        sum(|b| b.pg_listener_seat.get()) == 2
            && sum(|b| b.pg_listener.get()) == 2
            && sum(|b| b.nats_connected.get()) == 5
    })
    .await;
    let db = connect(&url).await;
    assert_eq!(seats_held(&db).await, 2);
    assert_eq!(
        listen_backends(&db).await,
        2,
        "only the seat holders LISTEN"
    );

    let tasks = ["a", "b", "c"];
    for task in tasks {
        insert_task(&db, task, "InProgress").await;
    }
    let followers: Vec<_> = instances
        .iter()
        .flat_map(|instance| tasks.map(|task| (instance.addr(), task)))
        .map(|(addr, task)| tokio::spawn(async move { follow(&[addr], task, None).await }))
        .collect();
    eventually("every instance watches every task", || {
        instances.iter().all(|i| i.handle.tail_count() == 3)
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_listeners(url.clone(), stop.clone());
    let writers = tasks.map(|task| {
        let url = url.clone();
        tokio::spawn(async move {
            let db = connect(&url).await;
            let session = format!("{task}-s1");
            for i in 0..60 {
                insert_event(&db, task, &session, "assistant", &format!("{task} {i}")).await;
            }
        })
    });
    for writer in join_all(writers).await {
        writer.expect("writer");
    }
    for task in tasks {
        set_status(&db, task, "Done").await;
    }
    for (n, received) in join_all(followers).await.into_iter().enumerate() {
        let task = tasks[n % tasks.len()];
        assert_exact(
            &received.expect("follower"),
            &committed(&db, task).await,
            &format!("client {n} of task {task}"),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.expect("sampler");
    assert!(most <= 2, "{most} LISTEN backends at once");
    let heard_from_postgres = instances
        .iter()
        .filter(|i| i.handle.metrics().notifications.get() > 0)
        .count();
    assert_eq!(heard_from_postgres, 2, "PostgreSQL notified two instances");
    for instance in instances.iter().filter(|i| bus(i).pg_listener.get() == 0) {
        assert!(
            bus(instance).nats_received.get() > 0,
            "an instance without LISTEN heard of events through NATS"
        );
    }
}

/// Both seat holders are killed with SIGKILL while writers write: within a few seconds two of
/// the three survivors hold the seats (and publish), PostgreSQL shows two LISTEN backends again,
/// and every client, resuming on a survivor when its instance died, gets exactly the committed
/// rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listeners_are_replaced_and_nothing_is_lost() {
    let nats = start_nats().await;
    let url = fresh_database().await;
    let nats_url = nats.url();
    let args = [
        "--nats-url",
        &nats_url,
        "--pg-listeners",
        "2",
        "--poll-interval",
        "200ms",
        "--keepalive",
        "300ms",
    ];
    let binary = env!("CARGO_BIN_EXE_taskstream");
    let mut instances = join_all((0..5).map(|_| ChildServer::start(binary, &url, &args))).await;
    let db = connect(&url).await;
    eventually_async("two seats held", || async { seats_held(&db).await == 2 }).await;
    let mut holders = Vec::new();
    for (n, instance) in instances.iter().enumerate() {
        if instance.metric("taskstream_pg_listener_seat").await == 1.0 {
            holders.push(n);
        }
    }
    assert_eq!(holders.len(), 2, "holders {holders:?}");

    insert_task(&db, "t", "InProgress").await;
    let addrs: Vec<_> = instances.iter().map(ChildServer::addr).collect();
    // Two clients per instance; each resumes on the next instance when its own dies.
    let followers: Vec<_> = (0..10)
        .map(|n| {
            let mut order = addrs.clone();
            order.rotate_left(n % addrs.len());
            tokio::spawn(async move { follow(&order, "t", None).await })
        })
        .collect();
    let writer = {
        let url = url.clone();
        tokio::spawn(async move {
            let db = connect(&url).await;
            for i in 0..300 {
                insert_event(&db, "t", "s1", "assistant", &format!("e {i}")).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually_async("the writer is half-way", || async {
        let written: i64 = db
            .query_one("SELECT count(*) FROM agent_events", &[])
            .await
            .expect("count events")
            .get(0);
        written >= 100
    })
    .await;
    for n in holders.iter().rev() {
        instances.remove(*n).kill().await;
    }
    eventually_async("two survivors hold the seats", || async {
        let mut seats = 0.0;
        for instance in &instances {
            seats += instance.metric("taskstream_pg_listener_seat").await;
        }
        seats == 2.0 && seats_held(&db).await == 2
    })
    .await;
    assert_eq!(listen_backends(&db).await, 2);
    writer.await.expect("writer");
    complete_and_check(&db, 300, followers).await;
    let mut published = 0.0;
    for instance in &instances {
        published += instance
            .metric("taskstream_nats_messages_published_total")
            .await;
    }
    assert!(published > 0.0, "the new holders publish");
}

/// NATS is killed while clients stream and a writer writes: every instance notices, the ones
/// with fallback LISTEN themselves (and receive notifications), the one with
/// `--nats-fallback false` does not LISTEN and relies on the poll; NATS comes back on the same
/// port and every instance returns to bus mode (only the holder LISTENs again, and events
/// arrive through NATS). Every client gets exactly the committed rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_falls_back_and_recovers() {
    let nats = start_nats().await;
    let url = fresh_database().await;
    let config = bus_config(&nats, 1);
    let mut no_fallback = config.clone();
    no_fallback.bus.nats_fallback = false;
    let (holder, others) = holder_then_others(
        &url,
        config.clone(),
        vec![config.clone(), config.clone(), no_fallback],
    )
    .await;
    let (fallbacks, polling) = (&others[..2], &others[2]);
    let db = connect(&url).await;
    insert_task(&db, "t", "InProgress").await;
    let followers: Vec<_> = std::iter::once(&holder)
        .chain(&others)
        .flat_map(|i| [i.addr(), i.addr()])
        .map(|addr| tokio::spawn(async move { follow(&[addr], "t", None).await }))
        .collect();
    eventually("every instance watches the task", || {
        std::iter::once(&holder)
            .chain(&others)
            .all(|i| i.handle.tail_count() == 1)
    })
    .await;
    let writer = connect(&url).await;
    let write = async |range: std::ops::Range<usize>| {
        for i in range {
            insert_event(&writer, "t", "s1", "assistant", &format!("e {i}")).await;
        }
    };
    write(0..20).await;

    // Blocking calls on a runtime thread: block_in_place lets the instances run meanwhile.
    tokio::task::block_in_place(|| nats.kill()).expect("kill nats-server");
    let everyone: Vec<&TestServer> = std::iter::once(&holder).chain(&others).collect();
    eventually("every instance noticed", || {
        everyone
            .iter()
            .all(|i| bus(i).nats_connected.get() == 0 && bus(i).nats_fallbacks.get() == 1)
    })
    .await;
    eventually("fallback instances LISTEN", || {
        fallbacks.iter().all(|i| bus(i).pg_listener.get() == 1)
    })
    .await;
    assert_eq!(bus(polling).pg_listener.get(), 0, "--nats-fallback false");
    assert_eq!(
        bus(&holder).pg_listener.get(),
        1,
        "the holder keeps its LISTEN"
    );
    assert_eq!(
        listen_backends(&db).await,
        3,
        "the cap does not hold while NATS is down"
    );
    let heard: Vec<u64> = fallbacks
        .iter()
        .map(|i| i.handle.metrics().notifications.get())
        .collect();
    write(20..40).await;
    eventually("fallback instances hear from PostgreSQL", || {
        fallbacks
            .iter()
            .zip(&heard)
            .all(|(i, before)| i.handle.metrics().notifications.get() >= before + 20)
    })
    .await;

    tokio::task::block_in_place(|| nats.restart()).expect("restart nats-server");
    eventually("every instance is back in bus mode", || {
        everyone.iter().all(|i| bus(i).nats_connected.get() == 1)
            && others.iter().all(|i| bus(i).pg_listener.get() == 0)
    })
    .await;
    assert_eq!(
        listen_backends(&db).await,
        1,
        "only the holder LISTENs again"
    );
    let received: Vec<u64> = others.iter().map(|i| bus(i).nats_received.get()).collect();
    write(40..60).await;
    eventually("events arrive through NATS again", || {
        others
            .iter()
            .zip(&received)
            .all(|(i, before)| bus(i).nats_received.get() >= before + 20)
    })
    .await;
    complete_and_check(&db, 60, followers).await;
}

/// An instance that watches task A receives no NATS message about task B: its subscriptions
/// follow its tails exactly (the NATS server counts them), it receives one message per event
/// of A, and none of the many events of B; when its last client of A leaves, it unsubscribes.
/// Its poll never runs, so what its client gets live came through NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_receives_only_what_it_watches() {
    let nats = start_nats().await;
    let url = fresh_database().await;
    let mut quiet = bus_config(&nats, 1);
    quiet.poll_interval = NO_POLL;
    let (holder, others) =
        holder_then_others(&url, bus_config(&nats, 1), vec![quiet.clone(), quiet]).await;
    let (x, y) = (&others[0], &others[1]);
    let db = connect(&url).await;
    insert_task(&db, "a", "InProgress").await;
    insert_task(&db, "b", "InProgress").await;
    // One subscription per instance for "re-check everything" before anyone watches anything.
    assert_eq!(server_subscriptions(&nats).await, 3);

    let mut on_x = x.stream("a").await;
    let mut on_y = y.stream("b").await;
    eventually_async("each watched task subscribed", || async {
        bus(x).nats_subscriptions.get() == 2
            && bus(y).nats_subscriptions.get() == 2
            && server_subscriptions(&nats).await == 5
    })
    .await;
    // Each event is written once the previous one was delivered, so each needs its own message.
    for i in 0..50 {
        insert_event(&db, "b", "b-s1", "assistant", &format!("b {i}")).await;
        assert_ledger(&on_y.take(1).await, &numbered("b", i..i + 1), "B on Y");
    }
    for i in 0..5 {
        insert_event(&db, "a", "a-s1", "assistant", &format!("a {i}")).await;
        assert_ledger(&on_x.take(1).await, &numbered("a", i..i + 1), "A on X");
    }
    // Each heard its task's events and the notice that its session started (for the live task
    // list, schema version 4), nothing of the other task.
    // A message on the `all` subject ("re-check everything") reaches every instance and may
    // come once more than counted here; hearing of the other task would add tens.
    let (heard_x, heard_y) = (bus(x).nats_received.get(), bus(y).nats_received.get());
    assert!(
        (5 + 1..5 + 1 + 3).contains(&heard_x),
        "X heard of A only: {heard_x}"
    );
    assert!(
        (50 + 1..50 + 1 + 3).contains(&heard_y),
        "Y heard of B only: {heard_y}"
    );
    assert_eq!(bus(&holder).nats_received.get(), 0, "the holder LISTENs");

    drop(on_x);
    eventually_async("X unsubscribed from A", || async {
        bus(x).nats_subscriptions.get() == 1 && server_subscriptions(&nats).await == 4
    })
    .await;
    drop(on_y);
}

/// A client reads from one instance, is cut off, and resumes on another by cursor: exactly what
/// it missed, then live events, which that instance (whose poll never runs) gets through NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_instance_by_cursor() {
    let nats = start_nats().await;
    let url = fresh_database().await;
    let mut quiet = bus_config(&nats, 1);
    quiet.poll_interval = NO_POLL;
    let (a, others) = holder_then_others(&url, bus_config(&nats, 1), vec![quiet]).await;
    let b = &others[0];
    let mut on_b = resume_elsewhere(&a, b.addr()).await;
    for i in 10..15 {
        a.event("t", "s1", "assistant", &format!("e {i}")).await;
    }
    assert_ledger(&on_b.take(5).await, &numbered("e", 10..15), "live on B");
    assert!(bus(b).nats_received.get() >= 1);
    a.status("t", "Done").await;
    assert_eq!(on_b.next().await.expect("complete").event, "complete");
}

/// A NATS server that requires TLS and a token: an instance with the CA and the token gets its
/// events through NATS; one with a wrong token never connects, counts a fallback, LISTENs
/// itself, and its client still gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_token_and_a_wrong_token_falls_back() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("self-signed certificate");
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let nats = start_nats_with(move |dir| {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(&key, key_pem).map_err(|e| e.to_string())?;
        Ok(vec![
            "--tls".to_owned(),
            "--tlscert".to_owned(),
            cert.display().to_string(),
            "--tlskey".to_owned(),
            key.display().to_string(),
            "--auth".to_owned(),
            "s3cret".to_owned(),
        ])
    })
    .await;
    let url = fresh_database().await;
    let mut config = bus_config(&nats, 1);
    config.bus.nats_urls = vec![format!("tls://127.0.0.1:{}", nats.port())];
    config.bus.nats_tls_ca = Some(nats.dir().join("cert.pem"));
    config.bus.nats_token = Some(taskstream::config::Secret(b"s3cret".to_vec()));
    let mut quiet = config.clone();
    quiet.poll_interval = NO_POLL;
    let mut wrong = config.clone();
    wrong.bus.nats_token = Some(taskstream::config::Secret(b"wrong".to_vec()));
    let (holder, others) = holder_then_others(&url, config, vec![quiet, wrong]).await;
    let (trusted, refused) = (&others[0], &others[1]);
    assert_eq!(bus(&holder).nats_connected.get(), 1);
    assert_eq!(bus(trusted).nats_connected.get(), 1);
    assert_eq!(bus(refused).nats_connected.get(), 0);
    assert_eq!(bus(refused).nats_fallbacks.get(), 1);
    assert_eq!(bus(refused).pg_listener.get(), 1);

    holder.task("t", "InProgress").await;
    let mut on_trusted = trusted.stream("t").await;
    let mut on_refused = refused.stream("t").await;
    // The holder's and the trusted instance's "re-check everything", and the trusted one's task.
    eventually_async("the trusted instance subscribed", || async {
        server_subscriptions(&nats).await == 3
    })
    .await;
    for i in 0..5 {
        holder
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
        assert_ledger(
            &on_trusted.take(1).await,
            &numbered("e", i..i + 1),
            "over TLS",
        );
    }
    assert_ledger(
        &on_refused.take(5).await,
        &numbered("e", 0..5),
        "by fallback",
    );
    // The five events and the notice that their session started (for the live task list), and
    // possibly an `all`-subject re-check message, which reaches every instance.
    let heard = bus(trusted).nats_received.get();
    assert!((5 + 1..5 + 1 + 3).contains(&heard), "heard {heard}");
}

/// A NATS client that may publish cannot forge events either: payloads travel with the MAC the
/// database computed, and the receiving instance verifies it. Forged messages on the task's own
/// subject (unsigned, with a made-up MAC, not UTF-8, an unsigned `{}`) deliver nothing and are
/// counted; the client gets exactly the committed rows, through NATS (its instance never polls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_publisher_cannot_forge_events() {
    let nats = start_nats().await;
    let url = fresh_database().await;
    let mut quiet = bus_config(&nats, 1);
    quiet.poll_interval = NO_POLL;
    let (_holder, others) = holder_then_others(&url, bus_config(&nats, 1), vec![quiet]).await;
    let watcher = &others[0];
    let db = connect(&url).await;
    insert_task(&db, "a", "InProgress").await;
    insert_event(&db, "a", "a-s1", "assistant", "a 0").await;
    let mut stream = watcher.stream("a").await;
    assert_ledger(&stream.take(1).await, &numbered("a", 0..1), "replay");
    eventually_async("A subscribed", || async {
        bus(watcher).nats_subscriptions.get() == 2
    })
    .await;

    let publisher = async_nats::connect(nats.url())
        .await
        .expect("a NATS client");
    let subject = taskstream::live::bus::subject("taskstream", "taskstream_events", Some("a"));
    let json = r#"{"t":"a","s":"a-s1","a":1,"q":2,"y":"assistant","c":"FORGED"}"#;
    let forgeries: [Vec<u8>; 4] = [
        json.as_bytes().to_vec(),
        format!("{}.{json}", "A".repeat(43) + "=").into_bytes(),
        b"\xff\xfe".to_vec(),
        b"{}".to_vec(),
    ];
    for forged in &forgeries {
        publisher
            .publish(subject.clone(), forged.clone().into())
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    eventually("the forgeries counted", || {
        watcher.handle.metrics().notifications_forged.get() >= forgeries.len() as u64
    })
    .await;

    insert_event(&db, "a", "a-s1", "assistant", "a 1").await;
    set_status(&db, "a", "Done").await;
    let events = stream.until_complete().await;
    let (_complete, events) = events.split_last().expect("complete");
    assert_ledger(
        events,
        &numbered("a", 1..2),
        "only the committed event, live",
    );
}
