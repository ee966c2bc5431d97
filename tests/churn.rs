//! Connect/disconnect churn leaks nothing. Its own test binary: it reads the process's memory,
//! which tests running beside it would disturb.
//!
//! The cycle count is divided by `TASKSTREAM_LOAD_DIVISOR` if set (see `load.rs`).

use futures_util::StreamExt;
use support::http::Response;
use support::load::load_count;
use support::server::{TestServer, fast_config};
use support::wait::eventually;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 20,000 connect/disconnect cycles: afterwards open streams, live tails, connections and
/// spawned tasks are back to their baseline, and memory stays within a bound (the allocator
/// keeps freed memory, so the counts, not RSS, prove there is no leak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_leave_nothing_behind() {
    taskstream::raise_open_files_limit().expect("raise the open files limit");
    let server = TestServer::start(fast_config()).await;
    let tasks: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for task in &tasks {
        server.task(task, "InProgress").await;
        server
            .event(task, &format!("{task}-s1"), "assistant", "hello")
            .await;
    }
    let addr = server.addr();
    let cycle = |i: usize| {
        let path = format!("/tasks/{}/events/stream", tasks[i % tasks.len()]);
        async move {
            let mut sse = Response::get(addr, &path, &[]).await;
            assert_eq!(sse.status, 200);
            if i.is_multiple_of(2) {
                sse.take(1).await; // half leave after an event, half right after the headers
            }
        }
    };
    const PARALLEL: usize = 64;
    // Warm up first: the pool opens its connections (each with a driver task) on demand.
    futures_util::stream::iter(0..1000)
        .for_each_concurrent(PARALLEL, cycle)
        .await;
    let runtime = tokio::runtime::Handle::current().metrics();
    let metrics = server.handle.metrics();
    eventually("the warm-up to end", || {
        metrics.open_streams.get() == 0 && metrics.connections.get() == 0
    })
    .await;
    let baseline_tasks = runtime.num_alive_tasks();
    let baseline_rss = rss_kib();
    let baseline_ends = metrics.stream_end_count(taskstream::metrics::EndReason::ClientGone);

    let cycles = load_count(20_000);
    futures_util::stream::iter(0..cycles)
        .for_each_concurrent(PARALLEL, cycle)
        .await;

    eventually("open streams back to 0", || metrics.open_streams.get() == 0).await;
    eventually("live tails back to 0", || {
        metrics.live_tails.get() == 0 && server.handle.tail_count() == 0
    })
    .await;
    eventually("connections back to 0", || metrics.connections.get() == 0).await;
    let tasks_now = || runtime.num_alive_tasks();
    eventually(
        &format!("spawned tasks back to the baseline of {baseline_tasks}"),
        || tasks_now() <= baseline_tasks,
    )
    .await;
    let grown = rss_kib().saturating_sub(baseline_rss);
    assert!(
        grown < 128 * 1024,
        "RSS grew by {grown} KiB over {cycles} cycles"
    );
    let ends = metrics.stream_end_count(taskstream::metrics::EndReason::ClientGone) - baseline_ends;
    assert_eq!(ends, cycles as u64, "every stream ended as its client left");
}
