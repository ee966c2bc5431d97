//! The database roles, with real login roles over real sockets: an agent with only
//! `taskstream_writer` can run the README's statements and nothing else; a server with only
//! `taskstream_server` serves the whole protocol without migrating; a migrator without
//! CREATEROLE is told which roles to create.

use support::cluster::{connect, fresh_database};
use support::http::Response;
use support::ledger::contents;
use support::roles::{SERVER, WRITER, as_user, login, sqlstate};
use support::server::fast_config;
use support::writer::{insert_event, insert_task, set_status};
use taskstream::Config;
use taskstream::db::{MigrateOptions, migrate};
use taskstream::embedded_pg::Cluster;
use tokio_postgres::Client;

/// The SQL block that the README tells agents to run.
fn readme_agent_statements() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("Agents only ever write:\n\n```sql\n")
        .expect("the README shows the agent's statements");
    let block = &readme[start..];
    let block = &block[block.find("```sql\n").expect("block") + 7..];
    let block = &block[..block.find("```").expect("end of block")];
    block
        .split(";\n")
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs `sql` and returns its SQLSTATE if it failed.
async fn refusal(db: &Client, sql: &str) -> Option<String> {
    db.batch_execute(sql)
        .await
        .err()
        .map(|e| sqlstate(&e).unwrap_or("not a database error").to_owned())
}

/// A writer-only login runs exactly the README's agent statements, and the triggers do the
/// rest (session, seq) on its behalf.
#[tokio::test]
async fn a_writer_only_login_runs_the_readme_statements() {
    let url = fresh_database().await;
    let agent = connect(&login(&url, &[WRITER]).await).await;
    let statements = readme_agent_statements();
    assert_eq!(statements.len(), 3, "{statements:?}");
    for statement in &statements {
        agent
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }
    let owner = connect(&url).await;
    let row = owner
        .query_one(
            "SELECT t.status, s.id, s.last_seq, e.seq FROM tasks t
             JOIN agent_sessions s ON s.task_id = t.id JOIN agent_events e ON e.session_id = s.id
             WHERE t.id = 'task-42'",
            &[],
        )
        .await
        .expect("the rows the statements wrote");
    let (status, session, last_seq, seq): (String, String, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (status.as_str(), session.as_str(), last_seq, seq),
        ("Review", "session-1", 1, 1)
    );
}

/// Everything else a writer might try is refused: choosing id, seq or created_at (including
/// `OVERRIDING SYSTEM VALUE`), changing or deleting events, touching sessions, deleting tasks,
/// reading events or the notification key, calling taskstream's functions, creating objects,
/// disabling triggers, and ids that break the rules.
#[tokio::test]
async fn a_writer_is_refused_everything_else() {
    let url = fresh_database().await;
    let owner = connect(&url).await;
    insert_task(&owner, "t", "InProgress").await;
    insert_event(&owner, "t", "s", "assistant", "first").await;
    let agent = connect(&login(&url, &[WRITER]).await).await;
    let denied = "42501";
    let check = "23514";
    for (sql, expected) in [
        (
            "INSERT INTO agent_events (task_id, session_id, event_type, content, seq) \
             VALUES ('t', 's', 'x', 'y', 9)",
            denied,
        ),
        (
            "INSERT INTO agent_events (id, task_id, session_id, event_type, content) \
             OVERRIDING SYSTEM VALUE VALUES (999, 't', 's', 'x', 'y')",
            denied,
        ),
        (
            "INSERT INTO agent_events (task_id, session_id, event_type, content, created_at) \
             VALUES ('t', 's', 'x', 'y', now())",
            denied,
        ),
        ("UPDATE agent_events SET content = 'changed'", denied),
        ("DELETE FROM agent_events", denied),
        ("TRUNCATE agent_events", denied),
        ("SELECT content FROM agent_events", denied),
        ("SELECT * FROM agent_sessions", denied),
        ("UPDATE agent_sessions SET last_seq = 0", denied),
        (
            "INSERT INTO agent_sessions (id, task_id) VALUES ('s9', 't')",
            denied,
        ),
        ("DELETE FROM agent_sessions", denied),
        ("UPDATE tasks SET created_at = now() WHERE id = 't'", denied),
        (
            "INSERT INTO tasks (id, title, status, created_at) VALUES ('u', 'u', 'Open', now())",
            denied,
        ),
        ("DELETE FROM tasks WHERE id = 't'", denied),
        ("SELECT title FROM tasks", denied),
        ("SELECT mac_key FROM taskstream_notify_settings", denied),
        (
            "UPDATE taskstream_notify_settings SET payload = 'event'",
            denied,
        ),
        ("UPDATE taskstream_schema SET version = 1", denied),
        (
            "SELECT taskstream_signed('taskstream_events', '{}', '\\x00'::bytea)",
            denied,
        ),
        ("SELECT taskstream_fixed_id('x')", denied),
        (
            "ALTER TABLE agent_events DISABLE TRIGGER agent_events_notify",
            denied,
        ),
        ("CREATE TABLE public.mine (x int)", denied),
        (
            "INSERT INTO tasks (id, title, status) VALUES ('*', 'w', 'InProgress')",
            check,
        ),
        (
            "INSERT INTO tasks (id, title, status) VALUES (E'a\\nb', 'w', 'InProgress')",
            check,
        ),
        (
            "INSERT INTO tasks (id, title, status) VALUES (E'a\\x7f', 'w', 'InProgress')",
            check,
        ),
        (
            "INSERT INTO agent_events (task_id, session_id, event_type, content) \
             VALUES ('t', E's\\x01', 'x', 'y')",
            check,
        ),
    ] {
        assert_eq!(
            refusal(&agent, sql).await.as_deref(),
            Some(expected),
            "{sql}"
        );
    }
    let events: i64 = owner
        .query_one("SELECT count(*) FROM agent_events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(events, 1, "nothing was written");
}

/// A writer's temporary tables named like taskstream's cannot take the trigger's writes or
/// its key: `pg_temp` is last in the triggers' search_path. The event lands in the real
/// session row, and its notification is signed with the real key (no server counts it as
/// forged; it arrives live).
#[tokio::test]
async fn a_writers_temporary_tables_do_not_hijack_the_triggers() {
    let url = fresh_database().await;
    let owner = connect(&url).await;
    insert_task(&owner, "t", "InProgress").await;
    let server = taskstream::start(fast_config(), &url, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start");
    let mut stream = Response::get(server.local_addr(), "/tasks/t/events/stream", &[]).await;
    let agent = connect(&login(&url, &[WRITER]).await).await;
    agent
        .batch_execute(
            "CREATE TEMP TABLE agent_sessions (id text, task_id text, \
                 started_at timestamptz DEFAULT now(), last_seq bigint DEFAULT 41);
             CREATE TEMP TABLE taskstream_notify_settings \
                 (singleton boolean, mac_key bytea, payload text);
             INSERT INTO pg_temp.taskstream_notify_settings \
                 VALUES (true, 'a key the writer knows', 'event');
             INSERT INTO agent_events (task_id, session_id, event_type, content) \
                 VALUES ('t', 's1', 'assistant', 'after the hijack attempt')",
        )
        .await
        .expect("a writer may create temporary tables and insert events");
    assert_eq!(
        contents(&stream.take(1).await),
        ["after the hijack attempt"]
    );
    assert_eq!(server.metrics().notifications_forged.get(), 0);
    let temp: i64 = agent
        .query_one("SELECT count(*) FROM pg_temp.agent_sessions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(temp, 0, "the trigger never wrote to the writer's table");
    let last_seq: i64 = owner
        .query_one("SELECT last_seq FROM agent_sessions WHERE id = 's1'", &[])
        .await
        .expect("the real session row")
        .get(0);
    assert_eq!(last_seq, 1);
    server.shutdown();
    server.stopped().await;
}

/// A `seq` given by the owner (who may name the column) is overwritten by the trigger, and a
/// session's events belong to one task however writers race: a session of another task is
/// refused with its own SQLSTATE and constraint, apart from a missing task.
#[tokio::test]
async fn seq_is_assigned_and_a_session_belongs_to_one_task() {
    let url = fresh_database().await;
    let owner = connect(&url).await;
    insert_task(&owner, "a", "InProgress").await;
    insert_task(&owner, "b", "InProgress").await;
    let seq: i64 = owner
        .query_one(
            "INSERT INTO agent_events (task_id, session_id, event_type, content, seq) \
             VALUES ('a', 's1', 'assistant', 'x', 999) RETURNING seq",
            &[],
        )
        .await
        .expect("insert with a seq")
        .get(0);
    assert_eq!(seq, 1, "the writer's seq is overwritten");

    // Two writers race to start one session for two tasks: exactly one wins.
    let writer_url = login(&url, &[WRITER]).await;
    let (one, two) = (connect(&writer_url).await, connect(&writer_url).await);
    let insert = "INSERT INTO agent_events (task_id, session_id, event_type, content) \
                  VALUES ($1, 'raced', 'assistant', 'x')";
    let (ra, rb) = tokio::join!(one.execute(insert, &[&"a"]), two.execute(insert, &[&"b"]));
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} {rb:?}");
    let loser = ra.err().or(rb.err()).expect("one failed");
    let db_error = loser.as_db_error().expect("a database error");
    assert_eq!(
        (db_error.code().code(), db_error.constraint()),
        ("23505", Some("agent_sessions_pkey")),
        "{db_error}"
    );
    assert!(
        !db_error.message().contains("task a") && !db_error.message().contains(" a,"),
        "the other task is not named: {}",
        db_error.message()
    );

    let missing = one
        .execute(insert.replace("raced", "fresh").as_str(), &[&"nope"])
        .await
        .expect_err("no such task");
    assert_eq!(sqlstate(&missing), Some("23503"));
}

/// A login with only `taskstream_server`, started with `--migrate false`, serves everything:
/// replay, live, resume, `complete`, the viewer and the metrics; with `--migrate true` it
/// starts too, because a current schema needs no DDL.
#[tokio::test]
async fn a_server_only_login_serves_everything() {
    let url = fresh_database().await;
    let server_url = login(&url, &[SERVER]).await;
    let owner = connect(&url).await;
    insert_task(&owner, "t", "InProgress").await;
    for i in 0..3 {
        insert_event(&owner, "t", "s1", "assistant", &format!("e{i}")).await;
    }
    let config = Config {
        migrate: false,
        ..fast_config()
    };
    let handle = taskstream::start(config, &server_url, "127.0.0.1:0".parse().expect("addr"))
        .await
        .unwrap_or_else(|e| panic!("a server-only login starts: {e}"));
    let addr = handle.local_addr();

    let mut stream = Response::get(addr, "/tasks/t/events/stream", &[]).await;
    assert_eq!(
        contents(&stream.take(3).await),
        ["e0", "e1", "e2"],
        "replay"
    );
    insert_event(&owner, "t", "s1", "assistant", "e3").await;
    let live = stream.take(1).await;
    assert_eq!(contents(&live), ["e3"], "live");
    insert_event(&owner, "t", "s1", "assistant", "e4").await;
    let mut resumed = Response::get(
        addr,
        "/tasks/t/events/stream",
        &[("last-event-id", &live[0].id)],
    )
    .await;
    assert_eq!(contents(&resumed.take(1).await), ["e4"], "resume");
    set_status(&owner, "t", "Done").await;
    let rest = resumed.until_complete().await;
    assert_eq!(rest.last().map(|e| e.event.as_str()), Some("complete"));

    for path in ["/", "/tasks/t", "/readyz"] {
        let page = Response::get(addr, path, &[]).await;
        assert_eq!(page.status, 200, "{path}");
    }
    let metrics = Response::get(addr, "/metrics", &[]).await.text().await;
    assert!(
        metrics.contains("taskstream_notification_queue_usage "),
        "{metrics}"
    );
    assert!(metrics.contains("taskstream_notifications_forged_total 0"));
    assert!(handle.metrics().notifications.get() > 0);

    let again = taskstream::start(
        fast_config(),
        &server_url,
        "127.0.0.1:0".parse().expect("a"),
    )
    .await
    .unwrap_or_else(|e| panic!("--migrate true on a current schema needs no DDL: {e}"));
    for server in [handle, again] {
        server.shutdown();
        server.stopped().await;
    }
}

/// A migrator that may not create roles is told which ones to create, and a database owner
/// that is no superuser migrates once they exist (pgcrypto is a trusted extension). Its own
/// cluster: the roles are cluster-wide, and every other test's cluster has them.
#[tokio::test]
async fn a_migrator_without_createrole_is_told_which_roles_to_create() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster thread")
        .expect("a private cluster");
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE ROLE app_owner LOGIN")
        .await
        .expect("owner");
    admin
        .batch_execute("CREATE DATABASE app OWNER app_owner")
        .await
        .expect("database");
    let owner_url = as_user(&cluster.url("app"), "app_owner");

    let error = migrate(&owner_url, &MigrateOptions::default())
        .await
        .expect_err("no CREATEROLE");
    let text = error.to_string();
    for expected in [
        "taskstream_server and taskstream_writer",
        "CREATE ROLE taskstream_server NOLOGIN;",
        "CREATE ROLE taskstream_writer NOLOGIN;",
    ] {
        assert!(text.contains(expected), "{text}");
    }

    admin
        .batch_execute(
            "CREATE ROLE taskstream_server NOLOGIN; CREATE ROLE taskstream_writer NOLOGIN",
        )
        .await
        .expect("the roles, by hand");
    let migration = migrate(&owner_url, &MigrateOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the owner migrates: {e}"));
    assert!(
        migration
            .steps
            .iter()
            .any(|s| s == "created extension pgcrypto"),
        "{:?}",
        migration.steps
    );
    drop(admin);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("stop the cluster");
}
