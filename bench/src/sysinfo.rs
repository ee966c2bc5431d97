//! What the kernel says about processes and the machine: CPU time and memory of the server
//! under test (from `/proc/<pid>`), the process tree of nginx and PostgreSQL, and the machine
//! and tool versions that go into the results.

use std::fs;
use std::process::Command;

/// CPU time and memory of a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory (each process's `VmHWM`, added up), KiB.
    pub hwm_kib: u64,
}

/// Samples every process in `pids` (one that has gone counts as zero).
pub fn sample(pids: &[u32]) -> ProcSample {
    let ticks = clock_ticks();
    let mut total = ProcSample::default();
    for &pid in pids {
        if let Some((user, system)) = cpu_ticks(pid) {
            total.cpu_seconds += (user + system) as f64 / ticks;
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            total.rss_kib += status_kib(&status, "VmRSS:").unwrap_or(0);
            total.hwm_kib += status_kib(&status, "VmHWM:").unwrap_or(0);
        }
    }
    total
}

/// CPU seconds of `pid` and of its children that have exited and been waited for (a
/// PostgreSQL backend's CPU stays counted after it ends), plus its live children's.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let ticks = clock_ticks();
    let own = stat_fields(pid).map_or(0.0, |f| {
        // utime, stime, cutime, cstime: fields 14-17 (1-based), 11-14 here.
        f.iter()
            .skip(11)
            .take(4)
            .map(|v| v.parse::<u64>().unwrap_or(0))
            .sum::<u64>() as f64
    });
    let children: f64 = children(pid)
        .into_iter()
        .filter_map(cpu_ticks)
        .map(|(u, s)| (u + s) as f64)
        .sum();
    (own + children) / ticks
}

/// The direct children of `pid` (each thread's list, so none is missed).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Fields of `/proc/<pid>/stat` after the command name (which may contain spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// (utime, stime) in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let fields = stat_fields(pid)?;
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds this process (the generator) has used so far.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value, and getrusage writes into the one we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The machine the figures come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -srm`.
    pub kernel: String,
    /// `MemTotal` from `/proc/meminfo`, MiB.
    pub memory_mib: u64,
    /// The soft open-file limit after raising it.
    pub nofile_limit: u64,
}

/// Describes this machine.
pub fn machine(nofile_limit: u64) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: command_line("uname", &["-srm"]).unwrap_or_else(|| "unknown".to_owned()),
        memory_mib: status_kib(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
        nofile_limit,
    }
}

/// The load averages (1, 5, 15 minutes) from `/proc/loadavg`: how busy the shared machine was
/// around a run.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first line a command prints (stdout, else stderr), if it runs.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let sample = sample(&[std::process::id()]);
        assert!(sample.rss_kib > 0);
        assert!(sample.hwm_kib >= sample.rss_kib);
        assert!(own_cpu_seconds() >= 0.0);
    }

    #[test]
    fn reads_status_fields() {
        assert_eq!(
            status_kib("Name:\tx\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
        assert_eq!(status_kib("Name:\tx\n", "VmRSS:"), None);
    }
}
