//! The demo agent: writes realistic events into the private cluster of `cargo run`, so that a
//! newcomer has something to watch. It writes exactly as a real agent would: an `INSERT` per
//! event and an `UPDATE` of the task's status, nothing else.

use std::time::Duration;

use tokio_postgres::NoTls;

use crate::db;
use crate::shutdown::Shutdown;

/// Time between two events.
const STEP: Duration = Duration::from_secs(1);

/// Events per task before it goes to review (about a minute).
const STEPS_PER_TASK: usize = 60;

/// Titles the demo tasks cycle through.
const TITLES: [&str; 4] = [
    "Fix the flaky login test",
    "Add pagination to the orders API",
    "Upgrade the build to the new toolchain",
    "Write the migration for user avatars",
];

/// One step of the script: (event_type, content).
fn step(task: usize, n: usize) -> (&'static str, String) {
    let file = [
        "src/auth.rs",
        "src/orders.rs",
        "Cargo.toml",
        "migrations/0042.sql",
    ][task % 4];
    match n % 6 {
        0 => (
            "assistant",
            format!(
                "Step {}: let me look at `{file}` and see what changed.",
                n / 6 + 1
            ),
        ),
        1 => (
            "toolcall",
            serde_json::json!({ "tool": "read_file", "args": { "path": file } }).to_string(),
        ),
        2 => (
            "toolresult",
            serde_json::json!({
                "tool": "read_file",
                "success": true,
                "output": format!("// {file}\nfn main() {{\n    println!(\"hello\");\n}}\n"),
            })
            .to_string(),
        ),
        3 => (
            "toolcall",
            serde_json::json!({ "tool": "bash", "args": { "command": "cargo test --quiet" } })
                .to_string(),
        ),
        4 if n % 18 == 4 => (
            "error",
            "cargo test: 1 test failed (tests::login_retries); retrying with logs".to_owned(),
        ),
        4 => (
            "toolresult",
            serde_json::json!({
                "tool": "bash",
                "success": true,
                "output": "running 12 tests\n............\ntest result: ok. 12 passed",
            })
            .to_string(),
        ),
        _ => ("cost", format!("{:.4}", 0.0021 * (n + 1) as f64)),
    }
}

/// Runs the demo agent against `database_url` until `shutdown`, logging the stream URL of each
/// task it starts (`base_url` is the server's address).
pub async fn run(database_url: String, base_url: String, mut shutdown: Shutdown) {
    tokio::select! {
        result = write_forever(&database_url, &base_url) => {
            if let Err(error) = result {
                tracing::warn!(%error, "demo agent stopped");
            }
        }
        _ = shutdown.wait() => {}
    }
}

async fn write_forever(database_url: &str, base_url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = db::pg_config(database_url)?.connect(NoTls).await?;
    tokio::spawn(connection);

    // One finished task, so that replay and `complete` can be seen at once.
    let done = "demo-finished";
    db::start_task(&client, done, "A task that already finished").await?;
    for n in 0..12 {
        let (event_type, content) = step(0, n);
        db::insert_event(&client, done, &format!("{done}-s1"), event_type, &content).await?;
    }
    db::set_status(&client, done, "Done").await?;
    tracing::info!("demo: a finished task: curl -N {base_url}/tasks/{done}/events/stream");

    for task in 1.. {
        let id = format!("demo-{task}");
        db::start_task(&client, &id, TITLES[task % TITLES.len()]).await?;
        tracing::info!("demo: task {id} is running: curl -N {base_url}/tasks/{id}/events/stream");
        let session = format!("{id}-s1");
        tracing::info!(
            "demo: write into it yourself: curl -X POST {base_url}/tasks/{id}/events \
             -H 'content-type: application/json' \
             -d '{{\"session\":\"{session}\",\"type\":\"assistant\",\"content\":\"Hello from curl\"}}'"
        );
        for n in 0..STEPS_PER_TASK {
            let (event_type, content) = step(task, n);
            db::insert_event(&client, &id, &session, event_type, &content).await?;
            tokio::time::sleep(STEP).await;
        }
        db::set_status(&client, &id, "Review").await?;
    }
    Ok(())
}
