//! The nginx + nchan peer: a private nginx with the nchan module, started from a configuration
//! in its own temporary directory (every path nginx writes — pid, error log, temp files — is
//! in there; the access log is off), so the system's nginx setup is never read or touched.
//!
//! Publisher: `POST /pub/<channel>`; subscriber: `GET /sub/<channel>` with EventSource framing.
//! One worker process, for a like-for-like comparison with one taskstream process.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::process::terminate;
use crate::sysinfo;

/// Where Debian's `libnginx-mod-nchan` puts the module.
const MODULE_PATHS: [&str; 2] = [
    "/usr/lib/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
];

/// nginx worker processes: one, like the one taskstream process it is compared with.
pub const WORKERS: u32 = 1;

/// Messages nchan keeps per channel, so that a resume (`Last-Event-ID`) and a replay find
/// every event of a run, as taskstream finds them in the table.
const MESSAGE_BUFFER: u32 = 100_000;

/// Longest nginx may take to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a stop may take before nginx is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// An nginx binary with the nchan module.
#[derive(Debug, Clone)]
pub struct NginxSetup {
    /// The nginx binary.
    pub nginx: PathBuf,
    /// The nchan module.
    pub module: PathBuf,
    /// `nginx -v`.
    pub version: String,
    /// The Debian package version of the module, if known.
    pub nchan_version: String,
}

/// Finds nginx and the nchan module; `Err` says why the peer cannot run.
pub fn detect() -> Result<NginxSetup, String> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("nginx is not installed (Debian: apt-get install nginx libnginx-mod-nchan)")?;
    let module = MODULE_PATHS
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("the nchan module is not installed (Debian: apt-get install libnginx-mod-nchan)")?;
    let version = sysinfo::command_line(&nginx.display().to_string(), &["-v"])
        .map(|v| v.trim_start_matches("nginx version: ").to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let nchan_version =
        sysinfo::command_line("dpkg-query", &["-W", "-f=${Version}", "libnginx-mod-nchan"])
            .unwrap_or_else(|| "unknown".to_owned());
    Ok(NginxSetup {
        nginx,
        module,
        version,
        nchan_version,
    })
}

/// The configuration: everything under `dir`, listening on `port` of 127.0.0.1.
pub fn config(setup: &NginxSetup, dir: &Path, port: u16, ping_seconds: u64, files: u64) -> String {
    let d = dir.display();
    let connections = files.saturating_sub(64).clamp(1024, 65_000);
    format!(
        "load_module {module};
worker_processes {WORKERS};
worker_rlimit_nofile {files};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    nchan_max_reserved_memory 256M;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length {MESSAGE_BUFFER};
            nchan_message_timeout 1h;
        }}
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            nchan_subscriber_first_message oldest;
            nchan_eventsource_ping_interval {ping_seconds};
        }}
    }}
}}
",
        module = setup.module.display(),
    )
}

/// A running private nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx; `Err` carries the end of its error log.
    pub fn start(setup: &NginxSetup, ping_seconds: u64, files: u64) -> Result<Nginx, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "taskstream-bench-nginx-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // The worker runs as an unprivileged user and must reach its temp directories.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, config(setup, &dir, port, ping_seconds, files))
            .map_err(|e| format!("write {}: {e}", conf.display()))?;
        let child = Command::new(&setup.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {}: {e}", setup.nginx.display()))?;
        let mut nginx = Nginx {
            child: Some(child),
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(nginx.addr).is_ok() && !nginx.workers().is_empty() {
                return Ok(nginx);
            }
            let exited = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = nginx.log_tail();
                nginx.stop();
                return Err(format!("nginx did not start: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.child.as_ref().map(Child::id).into_iter().collect();
        pids.extend(self.workers());
        pids
    }

    fn workers(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|c| sysinfo::children(c.id()))
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Stops nginx (fast shutdown) and removes its directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_TIMEOUT);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_the_config_is_in_its_directory() {
        let setup = NginxSetup {
            nginx: "/usr/sbin/nginx".into(),
            module: "/usr/lib/nginx/modules/ngx_nchan_module.so".into(),
            version: String::new(),
            nchan_version: String::new(),
        };
        let text = config(&setup, Path::new("/tmp/x"), 8000, 5, 20_000);
        for directive in [
            "pid",
            "error_log",
            "client_body_temp_path",
            "proxy_temp_path",
            "fastcgi_temp_path",
            "uwsgi_temp_path",
            "scgi_temp_path",
        ] {
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("{directive} ")))
                .unwrap_or_else(|| panic!("{directive} is set"));
            assert!(line.contains(" /tmp/x/"), "{line}");
        }
        assert!(text.contains("access_log off;"));
        assert!(text.contains("worker_processes 1;"));
        assert!(text.contains("listen 127.0.0.1:8000"));
    }
}
