//! Issue 4's targets, checked against a run's own figures, so that the results say plainly
//! which are met, which are missed and which this run did not measure (a `--quick` run measures
//! none of the sized ones). Comparisons with nginx + nchan use the same run only.

use crate::record::{Figures, RunRecord, Status};

/// Reference latency targets for 1,000 subscribers at 100 events/s (ms).
const FANOUT_1000_P50_MS: f64 = 2.0;
const FANOUT_1000_P99_MS: f64 = 5.0;
/// p99 target at 5,000 subscribers (ms).
const FANOUT_5000_P99_MS: f64 = 20.0;
/// Saturation must deliver this many times nchan's frames/s.
const SATURATION_FACTOR: f64 = 3.0;
/// Database queries/s with 1,000 subscribers may exceed those with 1 by this fraction.
const QUERY_GROWTH: f64 = 0.10;

/// One target and what this run says about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetCheck {
    /// The target, as the issue states it.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not measured here (`null`).
    pub met: Option<bool>,
}

/// Checks every target against `runs`.
pub fn check(runs: &[RunRecord]) -> Vec<TargetCheck> {
    let find = |label: &str, system: &str| -> Option<&Figures> {
        runs.iter()
            .find(|r| r.label == label && r.system == system && r.status == Status::Ok)
            .and_then(|r| r.figures.as_ref())
    };
    let kind = |scenario: &str, system: &str| -> Option<(&RunRecord, &Figures)> {
        runs.iter()
            .find(|r| r.scenario == scenario && r.system == system && r.status == Status::Ok)
            .and_then(|r| r.figures.as_ref().map(|f| (r, f)))
    };
    let mut out = Vec::new();

    let t = find("fanout-1000", "taskstream").and_then(|f| f.latency_ms);
    out.push(match t {
        Some(p) => TargetCheck {
            target: format!(
                "fan-out 1,000 subscribers at 100 events/s: p50 ≤ {FANOUT_1000_P50_MS} ms, \
                 p99 ≤ {FANOUT_1000_P99_MS} ms"
            ),
            measured: format!("p50 {:.2} ms, p99 {:.2} ms", p.p50, p.p99),
            met: Some(p.p50 <= FANOUT_1000_P50_MS && p.p99 <= FANOUT_1000_P99_MS),
        },
        None => unmeasured("fan-out 1,000 subscribers at 100 events/s: p50 ≤ 2 ms, p99 ≤ 5 ms"),
    });

    let t = find("fanout-5000", "taskstream").and_then(|f| f.latency_ms);
    out.push(match t {
        Some(p) => TargetCheck {
            target: format!("5,000 subscribers at 100 events/s: p99 ≤ {FANOUT_5000_P99_MS} ms"),
            measured: format!("p99 {:.2} ms", p.p99),
            met: Some(p.p99 <= FANOUT_5000_P99_MS),
        },
        None => unmeasured("5,000 subscribers at 100 events/s: p99 ≤ 20 ms"),
    });

    let ours = kind("saturation", "taskstream");
    let theirs = kind("saturation", "nginx-nchan");
    out.push(match (ours, theirs) {
        (Some((run, ours)), Some((_, theirs))) => TargetCheck {
            target: format!(
                "saturation ({} subscribers): ≥ {SATURATION_FACTOR}× nginx+nchan's frames/s \
                 (aim: 1,000,000)",
                run.clients
            ),
            measured: format!(
                "{:.0} vs {:.0} frames/s ({:.2}×)",
                ours.frames_per_second,
                theirs.frames_per_second,
                ours.frames_per_second / theirs.frames_per_second.max(1.0)
            ),
            met: Some(ours.frames_per_second >= SATURATION_FACTOR * theirs.frames_per_second),
        },
        _ => unmeasured("saturation: ≥ 3× nginx+nchan's frames/s in the same run"),
    });

    let ours = kind("idle", "taskstream").and_then(|(r, f)| Some((r, f.rss_per_stream_kib?)));
    let theirs = kind("idle", "nginx-nchan").and_then(|(_, f)| f.rss_per_stream_kib);
    out.push(match (ours, theirs) {
        (Some((run, ours)), Some(theirs)) => TargetCheck {
            target: format!(
                "RSS per idle stream at {} streams ≤ nginx+nchan's",
                run.clients
            ),
            measured: format!("{ours:.1} KiB vs {theirs:.1} KiB"),
            met: Some(ours <= theirs),
        },
        _ => unmeasured("RSS per idle stream at 10,000 streams ≤ nginx+nchan's"),
    });

    out.push(match kind("write-ceiling", "taskstream") {
        Some((run, f)) => TargetCheck {
            target: format!(
                "the write rate at which NOTIFY becomes the ceiling ({} writers, one session \
                 each)",
                run.sessions
            ),
            measured: format!(
                "{:.0} writes/s with the NOTIFY trigger, {:.0} without",
                f.extra.get("writes_per_s_notify").copied().unwrap_or(0.0),
                f.extra
                    .get("writes_per_s_no_notify")
                    .copied()
                    .unwrap_or(0.0)
            ),
            met: None,
        },
        None => unmeasured("the write rate at which NOTIFY becomes the ceiling"),
    });

    let one = find("fanout-1", "taskstream").and_then(|f| f.server_queries_per_second);
    let many = find("fanout-1000", "taskstream").and_then(|f| f.server_queries_per_second);
    out.push(match (one, many) {
        (Some(one), Some(many)) => TargetCheck {
            target: "database queries/s with 1,000 subscribers within 10 % of 1 subscriber"
                .to_owned(),
            measured: format!("{many:.2} vs {one:.2} queries/s"),
            met: Some(many <= one * (1.0 + QUERY_GROWTH) + f64::EPSILON),
        },
        _ => unmeasured("database queries/s with 1,000 subscribers within 10 % of 1 subscriber"),
    });

    for run in runs
        .iter()
        .filter(|r| r.scenario == "fanout" && r.system == "taskstream")
    {
        let ours = run.figures.as_ref().and_then(|f| f.latency_ms);
        let theirs = find(&run.label, "nginx-nchan").and_then(|f| f.latency_ms);
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            out.push(TargetCheck {
                target: format!("{}: latency no worse than nginx+nchan", run.label),
                measured: format!(
                    "p50 {:.2} vs {:.2} ms, p99 {:.2} vs {:.2} ms",
                    ours.p50, theirs.p50, ours.p99, theirs.p99
                ),
                met: Some(ours.p50 <= theirs.p50 && ours.p99 <= theirs.p99),
            });
        }
    }
    out
}

fn unmeasured(target: &str) -> TargetCheck {
    TargetCheck {
        target: target.to_owned(),
        measured: "not measured in this run".to_owned(),
        met: None,
    }
}

/// The checks as a Markdown list.
pub fn markdown(checks: &[TargetCheck]) -> String {
    let mut md = String::from("## Targets (issue 4)\n\n");
    for check in checks {
        let mark = match check.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "reported",
        };
        md.push_str(&format!(
            "- {mark}: {} — {}\n",
            check.target, check.measured
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Percentiles;

    fn run(label: &str, scenario: &str, system: &str, f: Figures) -> RunRecord {
        RunRecord {
            scenario: scenario.to_owned(),
            label: label.to_owned(),
            system: system.to_owned(),
            clients: 1_000,
            sessions: 1,
            target_rate: None,
            status: Status::Ok,
            reason: None,
            figures: Some(f),
        }
    }

    fn latency(p50: f64, p99: f64) -> Figures {
        Figures {
            latency_ms: Some(Percentiles {
                samples: 1,
                p50,
                p90: p99,
                p99,
                p999: p99,
                max: p99,
            }),
            ..Figures::default()
        }
    }

    #[test]
    fn targets_are_met_missed_or_not_measured() {
        let saturation = |fps| Figures {
            frames_per_second: fps,
            ..Figures::default()
        };
        let runs = [
            run("fanout-1000", "fanout", "taskstream", latency(1.5, 6.0)),
            run("fanout-1000", "fanout", "nginx-nchan", latency(5.5, 28.0)),
            run(
                "saturation-1000",
                "saturation",
                "taskstream",
                saturation(400_000.0),
            ),
            run(
                "saturation-1000",
                "saturation",
                "nginx-nchan",
                saturation(100_000.0),
            ),
        ];
        let checks = check(&runs);
        let met = |prefix: &str| {
            checks
                .iter()
                .find(|c| c.target.starts_with(prefix))
                .map(|c| c.met)
        };
        assert_eq!(met("fan-out 1,000"), Some(Some(false)), "p99 6 ms > 5 ms");
        assert_eq!(met("5,000"), Some(None));
        assert_eq!(met("saturation"), Some(Some(true)));
        assert_eq!(met("fanout-1000: latency"), Some(Some(true)));
        assert!(markdown(&checks).contains("**missed**"));
    }
}
