//! The private PostgreSQL cluster never outlives the process that started it: not on a normal
//! exit, not on a panic, not on SIGKILL. And the binary's embedded mode serves the demo data
//! and stops its cluster on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskstream::embedded_pg::Cluster;

/// Set in a child test process: how it should end after starting its cluster.
const CHILD_ROLE: &str = "TASKSTREAM_TEST_CLUSTER_CHILD";

const DEADLINE: Duration = Duration::from_secs(60);

/// The child's half of the tests below: start a cluster, report it, then end as told.
fn child_role(role: &str) -> ! {
    let cluster = Cluster::start().expect("start cluster");
    println!(
        "CLUSTER {} {}",
        cluster.server_pid().expect("server runs"),
        cluster.dir().display()
    );
    std::mem::forget(cluster); // as a static would be: no destructor runs
    match role {
        "panic" => panic!("the test process panics while its cluster runs"),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

/// Runs this very test binary filtered to `test`, in the child role, and returns it with the
/// pid and directory of the cluster it started.
fn spawn_child(test: &str, role: &str) -> (Child, u32, PathBuf) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // libtest may have written "test … ... " on the same line.
        if let Some((_, rest)) = line.split_once("CLUSTER ") {
            let (pid, dir) = rest.split_once(' ').expect("pid and dir");
            return (child, pid.parse().expect("pid"), PathBuf::from(dir));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the child never reported its cluster");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_gone(pid: u32, dir: &Path) {
    let start = Instant::now();
    while alive(pid) || dir.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "postgres {pid} or {} outlived its process",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL gives the test process no chance to clean up; the watchdog still stops postgres
/// and removes the cluster's directory.
#[test]
fn a_killed_test_process_leaves_no_postgres_behind() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        child_role(&role);
    }
    let (mut child, pid, dir) =
        spawn_child("a_killed_test_process_leaves_no_postgres_behind", "wait");
    assert!(alive(pid) && dir.exists());
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    wait_gone(pid, &dir);
}

/// A test process that panics (and so exits without dropping statics) leaves nothing behind.
#[test]
fn a_panicking_test_process_leaves_no_postgres_behind() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        child_role(&role);
    }
    let (mut child, pid, dir) = spawn_child(
        "a_panicking_test_process_leaves_no_postgres_behind",
        "panic",
    );
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child test failed by panicking");
    wait_gone(pid, &dir);
}

/// A cluster can be stopped and started again on the same port (the fault tests rely on it).
#[test]
fn a_cluster_restarts_on_its_port() {
    if std::env::var_os(CHILD_ROLE).is_some() {
        return;
    }
    let cluster = Cluster::start().expect("start");
    let (port, first) = (cluster.port(), cluster.server_pid().expect("runs"));
    cluster.stop_server().expect("stop");
    assert!(cluster.server_pid().is_none());
    let dir = cluster.dir().to_owned();
    cluster.start_server().expect("start again");
    let second = cluster.server_pid().expect("runs again");
    assert_ne!(first, second);
    assert_eq!(cluster.port(), port);
    drop(cluster);
    wait_gone(second, &dir);
}

/// `taskstream` without `DATABASE_URL` starts its own cluster with demo data, serves it, and on
/// SIGTERM stops the server and the cluster and exits cleanly.
#[test]
fn the_binary_serves_demo_data_and_stops_its_cluster() {
    if std::env::var_os(CHILD_ROLE).is_some() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskstream"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn taskstream");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let (mut dir, mut base) = (None, None);
    while base.is_none() {
        let line = lines
            .next()
            .expect("taskstream exited early")
            .expect("stderr");
        if let Some(rest) = line.strip_prefix("taskstream: PostgreSQL is up in ") {
            dir = Some(PathBuf::from(rest.split(" on port ").next().expect("dir")));
        }
        if let Some(url) = line.strip_prefix("taskstream: listening on ") {
            base = Some(url.to_owned());
        }
    }
    let dir = dir.expect("the cluster directory was printed");
    let pid_file =
        std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    let postgres: u32 = pid_file
        .lines()
        .next()
        .expect("pid line")
        .trim()
        .parse()
        .expect("pid");
    // Keep reading stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    // The demo writes a finished task first; its stream replays and completes.
    let addr = base.expect("url").trim_start_matches("http://").to_owned();
    let start = Instant::now();
    let body = loop {
        let body = http_get(&addr, "/tasks/demo-finished/events/stream");
        if body.contains("event: complete") {
            break body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the demo task never completed: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        body.matches("\nid: ").count(),
        13,
        "12 events and complete: {body}"
    );

    // SIGTERM: a clean exit, and the cluster is gone with it.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("reap").success());
    wait_gone(postgres, &dir);
}

/// A minimal blocking HTTP/1.0 GET (the server closes the response when the stream ends).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}
