//! Versioned migrations: the upgrade from the schema before them (with rows), the rule for a
//! binary older than the database, two instances migrating at once while a writer holds a
//! transaction open, a migration that gives up naming the blocker, `taskstream migrate` and
//! `--migrate false` as an operator runs them, and the address-only payload mode.

use std::process::Stdio;
use std::time::Duration;

use support::cluster::{connect, empty_database, fresh_database};
use support::http::Response;
use support::ledger::{contents, cursor};
use support::listener::eavesdropper;
use support::roles::as_user;
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use support::writer::{insert_event, insert_task};
use taskstream::db::{MigrateError, MigrateOptions, PayloadMode, migrate, schema_version};
use taskstream::metrics::QueryKind;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_postgres::Client;

/// `schema.sql` as it was before versioned migrations (schema version 1).
const SCHEMA_V1: &str = include_str!("fixtures/schema-v1.sql");

/// A database at schema version 1, with its owner's connection.
async fn v1_database() -> (String, Client) {
    let url = empty_database().await;
    let owner = connect(&url).await;
    owner.batch_execute(SCHEMA_V1).await.expect("schema v1");
    (url, owner)
}

/// One text value of the database at `db`.
async fn text(db: &Client, sql: &str) -> String {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// The `taskstream` binary, without the environment's database.
fn taskstream(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskstream"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("TASKSTREAM_LOG", "info")
        .env("TASKSTREAM_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the binary to its end: exit code, stdout, stderr.
async fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(WAIT, taskstream(args).output())
        .await
        .expect("the binary ends within the wait")
        .expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The schema before versioned migrations (version 1), with rows in it, is upgraded by the
/// first server that starts: functions and triggers replaced, constraints validated, ids that
/// break them renamed with their events, every row kept, and a cursor from before the upgrade
/// resumes exactly.
#[tokio::test]
async fn the_schema_before_versions_is_upgraded_with_its_rows() {
    let (url, owner) = v1_database().await;
    for (task, status) in [
        ("t", "InProgress"),
        ("*", "InProgress"),
        ("b\u{1}c", "Done"),
    ] {
        insert_task(&owner, task, status).await;
    }
    insert_event(&owner, "t", "s1", "assistant", "e0").await;
    insert_event(&owner, "t", "s1", "assistant", "e1").await;
    insert_event(&owner, "*", "s2", "assistant", "star").await;
    insert_event(&owner, "b\u{1}c", "s\u{7f}3", "assistant", "control").await;

    let server = TestServer::start_on(fast_config(), url.clone()).await;

    assert_eq!(
        text(
            &owner,
            "SELECT version::text || '/' || min_reader FROM taskstream_schema"
        )
        .await,
        format!(
            "{}/{}",
            schema_version().version,
            schema_version().min_reader
        )
    );
    assert_eq!(
        text(&owner, "SELECT string_agg(id, ',' ORDER BY id) FROM tasks").await,
        r"\x2a,b\x01c,t"
    );
    assert_eq!(
        text(
            &owner,
            "SELECT string_agg(task_id || '/' || session_id || '/' || seq || '/' || content, ',' \
             ORDER BY id) FROM agent_events"
        )
        .await,
        r"t/s1/1/e0,t/s1/2/e1,\x2a/s2/1/star,b\x01c/s\x7f3/1/control"
    );
    assert_eq!(
        text(
            &owner,
            "SELECT string_agg(conname || '=' || convalidated, ',' ORDER BY conname) \
             FROM pg_constraint WHERE conname LIKE '%id_rules'"
        )
        .await,
        "agent_sessions_id_rules=true,tasks_id_rules=true"
    );
    assert_eq!(
        text(
            &owner,
            "SELECT string_agg(proname || '=' || prosecdef || ':' || array_to_string(proconfig, ';'), \
             ',' ORDER BY proname) FROM pg_proc WHERE proname IN \
             ('taskstream_assign_seq', 'taskstream_notify_event')"
        )
        .await,
        "taskstream_assign_seq=true:search_path=pg_catalog, public, pg_temp,\
         taskstream_notify_event=true:search_path=pg_catalog, public, pg_temp"
    );
    let undocumented: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal \
             AND obj_description(oid, 'pg_trigger') IS NULL",
            &[],
        )
        .await
        .expect("triggers")
        .get(0);
    assert_eq!(
        undocumented, 0,
        "every trigger was replaced by its current definition"
    );

    let mut resumed = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &cursor("s1", 2))],
    )
    .await;
    server
        .event("t", "s1", "assistant", "after the upgrade")
        .await;
    let events = resumed.take(1).await;
    assert_eq!(contents(&events), ["after the upgrade"]);
    assert_eq!(events[0].id, cursor("s1", 3));
    assert_eq!(server.handle.metrics().notifications_forged.get(), 0);
}

/// A binary older than the database's schema serves it with a WARN naming both versions, as
/// long as it is at least the schema's min_reader, and never rewrites it; below min_reader it
/// refuses to start. (The database's version is raised by hand: this binary plays the older
/// one.)
#[tokio::test]
async fn an_older_binary_serves_a_newer_schema_down_to_its_min_reader() {
    let url = fresh_database().await;
    let owner = connect(&url).await;
    let binary = schema_version().version;
    let newer = binary + 1;
    owner
        .batch_execute(&format!(
            "UPDATE taskstream_schema SET version = {newer}, min_reader = {binary};
             COMMENT ON TRIGGER agent_events_notify ON agent_events IS 'a newer definition'"
        ))
        .await
        .expect("a newer schema");

    let mut child = taskstream(&["--database-url", &url, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let listening = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("listening on");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "{seen:#?}");
    assert!(
        seen.iter().any(|line| line.contains(r#""level":"WARN""#)
            && line.contains("newer than this taskstream")
            && line.contains(&format!(r#""database":{newer}"#))
            && line.contains(&format!(r#""binary":{binary}"#))),
        "{seen:#?}"
    );
    child.kill().await.expect("stop the binary");
    assert_eq!(
        text(
            &owner,
            "SELECT version || ' ' || obj_description(t.oid, 'pg_trigger') \
             FROM taskstream_schema, pg_trigger t WHERE t.tgname = 'agent_events_notify'"
        )
        .await,
        format!("{newer} a newer definition"),
        "the schema was left as it is"
    );

    owner
        .batch_execute(&format!(
            "UPDATE taskstream_schema SET version = {}, min_reader = {newer}",
            newer + 1
        ))
        .await
        .expect("a schema beyond this binary");
    for migrate in ["true", "false"] {
        let (code, _, stderr) = run(&[
            "--database-url",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            migrate,
        ])
        .await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "needs a taskstream built for schema version {newer} or newer"
            )),
            "{stderr}"
        );
    }
}

/// Two instances migrate the same database at once while a writer holds a transaction open
/// on it: they wait for their locks only briefly each time, so another writer still gets
/// through meanwhile; once the transaction ends, both start, and the schema is migrated once.
#[tokio::test]
async fn two_instances_migrate_at_once_while_a_writer_holds_a_transaction() {
    let (url, owner) = v1_database().await;
    insert_task(&owner, "t", "InProgress").await;
    insert_event(&owner, "t", "s1", "assistant", "before").await;
    let holder = connect(&url).await;
    holder
        .batch_execute(
            "BEGIN; INSERT INTO agent_events (task_id, session_id, event_type, content) \
             VALUES ('t', 's1', 'assistant', 'held')",
        )
        .await
        .expect("a writer's open transaction");

    let start = |url: String| {
        tokio::spawn(async move {
            taskstream::start(fast_config(), &url, "127.0.0.1:0".parse().expect("addr")).await
        })
    };
    let (first, second) = (start(url.clone()), start(url.clone()));
    let observer = connect(&url).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'taskstream' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no migration waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Another writer is not stalled behind the waiting migrations until the transaction ends.
    let other = connect(&url).await;
    tokio::time::timeout(
        WAIT,
        insert_event(&other, "t", "s2", "assistant", "meanwhile"),
    )
    .await
    .expect("a writer gets through while the migrations wait");
    assert!(
        !first.is_finished() && !second.is_finished(),
        "still migrating"
    );

    holder.batch_execute("COMMIT").await.expect("commit");
    let mut servers = Vec::new();
    for started in [first, second] {
        let server = tokio::time::timeout(WAIT, started)
            .await
            .expect("the migration completes once the transaction ends")
            .expect("start task")
            .unwrap_or_else(|e| panic!("start: {e}"));
        servers.push(server);
    }
    assert_eq!(
        text(&owner, "SELECT version::text FROM taskstream_schema").await,
        schema_version().version.to_string()
    );
    let body = Response::get(servers[1].local_addr(), "/tasks/t", &[]).await;
    assert_eq!(body.status, 200);
    for server in servers {
        server.shutdown();
        server.stopped().await;
    }
}

/// A migration that cannot take its locks before its deadline gives up, naming the
/// transaction that held them.
#[tokio::test]
async fn a_blocked_migration_names_the_blocking_transaction() {
    let (url, owner) = v1_database().await;
    insert_task(&owner, "t", "InProgress").await;
    let holder = connect(&url).await;
    holder
        .batch_execute(
            "SET application_name = 'holding-writer'; BEGIN; \
             INSERT INTO agent_events (task_id, session_id, event_type, content) \
             VALUES ('t', 's1', 'assistant', 'held')",
        )
        .await
        .expect("a writer's open transaction");
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let options = MigrateOptions {
        deadline: Duration::from_secs(2),
        ..MigrateOptions::default()
    };
    let error = migrate(&url, &options).await.expect_err("blocked");
    let MigrateError::Blocked { blockers, .. } = &error else {
        panic!("blocked: {error}");
    };
    assert!(blockers.iter().any(|b| b.pid == pid), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("pid {pid}"))
            && text.contains("holding-writer")
            && text.contains("idle in transaction"),
        "{text}"
    );
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    migrate(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("then it migrates: {e}"));
}

/// `taskstream migrate` as an operator runs it: it prints what it did and exits 0, says so when
/// there is nothing to do, sets the payload mode, and exits 1 with PostgreSQL's reason when it
/// cannot (2 without a database URL). A server with `--migrate false` refuses a database
/// without the schema in one line that names `taskstream migrate`.
#[tokio::test]
async fn taskstream_migrate_prints_what_it_did() {
    let url = empty_database().await;
    let (code, stdout, stderr) = run(&["migrate", "--database-url", &url]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let version = schema_version().version;
    let first = format!("no taskstream schema → schema version {version}");
    for line in [
        first.as_str(),
        "  created extension pgcrypto",
        "  added constraint tasks_id_rules on tasks",
        "  set trigger agent_events_notify on agent_events",
        "  validated constraint tasks_id_rules on tasks",
    ] {
        let line = format!("taskstream migrate: {line}");
        assert!(stdout.lines().any(|l| l == line), "{line}:\n{stdout}");
    }

    let (code, stdout, _) = run(&["migrate", "--database-url", &url]).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        format!("taskstream migrate: schema version {version} is current; nothing to apply\n")
    );
    let (code, stdout, _) = run(&[
        "migrate",
        "--database-url",
        &url,
        "--notify-payload",
        "address",
    ])
    .await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("  notification payloads: address (was event)"),
        "{stdout}"
    );

    let (code, _, stderr) =
        run(&["migrate", "--database-url", &as_user(&url, "no_such_role")]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("taskstream migrate: cannot reach PostgreSQL: ")
            && stderr.contains("no_such_role"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["migrate"]).await;
    assert_eq!(code, Some(2), "{stderr}");

    let empty = empty_database().await;
    let (code, _, stderr) = run(&[
        "--database-url",
        &empty,
        "--listen",
        "127.0.0.1:0",
        "--migrate",
        "false",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let refusal: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("`taskstream migrate`"))
        .collect();
    assert_eq!(refusal.len(), 1, "{stderr}");
    assert!(refusal[0].contains("no taskstream schema"), "{stderr}");
}

/// In the address-only mode a LISTENer reads no event content, and clients still get every
/// event, read from the table once per event by the server (not per client).
#[tokio::test]
async fn the_address_only_mode_keeps_content_out_of_notifications() {
    let server = TestServer::start(fast_config()).await;
    let options = MigrateOptions {
        notify_payload: Some(PayloadMode::Address),
        ..MigrateOptions::default()
    };
    let migration = migrate(&server.url, &options).await.expect("set the mode");
    assert_eq!(
        migration.steps,
        ["notification payloads: address (was event)"]
    );
    server.task("t", "InProgress").await;
    let mut clients = [server.stream("t").await, server.stream("t").await];
    eventually("two streams", || {
        server.handle.metrics().open_streams.get() == 2
    })
    .await;
    let (_listener, mut heard) = eavesdropper(&server.url).await;
    let reads = server.handle.metrics().query_count(QueryKind::Events);
    for i in 0..5 {
        server
            .event("t", "s1", "assistant", &format!("secret {i}"))
            .await;
    }
    for client in &mut clients {
        let events = client.take(5).await;
        assert_eq!(
            contents(&events),
            (0..5).map(|i| format!("secret {i}")).collect::<Vec<_>>()
        );
    }
    for _ in 0..5 {
        let payload = tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("a payload")
            .expect("payload");
        assert!(
            !payload.contains("secret") && !payload.contains("assistant"),
            "{payload}"
        );
        assert!(payload.contains(r#""q" : "#), "an address: {payload}");
    }
    let reads = server.handle.metrics().query_count(QueryKind::Events) - reads;
    assert!(
        (1..=5).contains(&reads),
        "{reads} reads for 5 events and 2 clients"
    );
}
