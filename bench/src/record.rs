//! The record of one (scenario, system) run: how it ended and everything it measured. The
//! scenarios fill it in; the report, the targets and the plot read it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::ledger::Tally;
use crate::metrics::ServerCounters;

/// A figure rounded to three decimals, as every stored result is.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
use crate::writer::WriteReport;

/// How a (scenario, system) run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran and every client received every event exactly once.
    Ok,
    /// The system could not run here (the reason says why).
    Skipped,
    /// It ran but lost or duplicated events, or could not finish.
    Failed,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    /// Events measured (per client: each client's copy counts).
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            samples: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    /// The measured window, seconds: from the first write (or the first connection) until
    /// every client was caught up.
    pub seconds: f64,
    /// The writer's batch in the window, if it wrote.
    pub writer: Option<WriteReport>,
    /// Benchmark frames received by all clients.
    pub frames: u64,
    /// `frames / seconds`.
    pub frames_per_second: f64,
    /// Body bytes received by all clients.
    pub bytes: u64,
    /// Write-to-receive latency.
    pub latency_ms: Option<Percentiles>,
    /// Every client's ledger, added up.
    pub tally: Tally,
    /// The worst client's ledger (index, tally), if one was not exact.
    pub worst_client: Option<(usize, Tally)>,
    /// Client reconnects after an unexpected end of stream.
    pub reconnects: u64,
    /// The first client error, if any.
    pub first_client_error: Option<String>,
    /// Whether the server's processes were known, so that CPU and memory were measured.
    pub server_measured: bool,
    /// Server (all its processes) user + system CPU seconds in the window.
    pub server_cpu_seconds: f64,
    /// The generator's (this process) CPU seconds in the window.
    pub generator_cpu_seconds: f64,
    /// PostgreSQL's (all its processes) CPU seconds in the window.
    pub db_cpu_seconds: Option<f64>,
    /// Peak resident memory of the server's processes over the run, KiB.
    pub server_peak_rss_kib: u64,
    /// Resident memory before any client connected, KiB.
    pub rss_before_kib: u64,
    /// Resident memory with every client connected, KiB.
    pub rss_connected_kib: u64,
    /// `(rss_connected - rss_before) / clients`, KiB.
    pub rss_per_stream_kib: Option<f64>,
    /// The server's own counters over the window (taskstream only).
    pub server_counters: Option<ServerCounters>,
    /// The server's database queries per second (taskstream only).
    pub server_queries_per_second: Option<f64>,
    /// Database transactions per second in the window: the writer's commits plus the server's
    /// queries (each an autocommit transaction), counted exactly by the two that make them.
    pub db_transactions_per_second: f64,
    /// `pg_stat_database.xact_commit` delta over the window, as a cross-check only: PostgreSQL
    /// publishes a backend's statistics at most once a second (an idle one's within ten), so
    /// over a short window it trails.
    pub db_xact_commit: i64,
    /// `db_xact_commit / seconds`.
    pub db_xact_per_second: f64,
    /// Most server connections to the database seen during the window.
    pub db_connections_max: Option<i64>,
    /// Scenario-specific figures (time to first event, catch-up time, …).
    pub extra: BTreeMap<String, f64>,
}

/// One (scenario, system) run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// The scenario kind (`fanout`, `saturation`, …).
    pub scenario: String,
    /// The scenario with its size (`fanout-1000`).
    pub label: String,
    /// The system.
    pub system: String,
    /// Clients (streams) opened.
    pub clients: usize,
    /// Sessions written to.
    pub sessions: usize,
    /// Events per second asked of the writer (`null`: as fast as it can).
    pub target_rate: Option<f64>,
    /// How it ended.
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// What it measured (also for a failed run, when it got that far).
    pub figures: Option<Figures>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fan-out run record for tests.
    pub(crate) fn fanout_run(status: Status, figures: Option<Figures>) -> RunRecord {
        RunRecord {
            scenario: "fanout".into(),
            label: "fanout-1".into(),
            system: "taskstream".into(),
            clients: 1,
            sessions: 1,
            target_rate: Some(100.0),
            status,
            reason: None,
            figures,
        }
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid");
        for us in [1_000, 2_000, 3_000] {
            h.record(us).expect("in range");
        }
        let p = Percentiles::of(&h).expect("not empty");
        assert_eq!(p.samples, 3);
        assert!((p.p50 - 2.0).abs() < 0.01, "{p:?}");
        assert!((p.max - 3.0).abs() < 0.01, "{p:?}");
        assert!(Percentiles::of(&Histogram::<u64>::new(3).expect("valid")).is_none());
    }
}
