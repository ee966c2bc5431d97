//! Issue 4's targets, checked against a run's own figures, so that the results say plainly
//! which are met, which are missed and which this run did not measure (a `--quick` run measures
//! none of the sized ones). Comparisons with nginx + nchan use the same run only.
//!
//! Each target's statement is written from the constants it checks, and a size it does not fix
//! is the run's own (or, when the run did not measure it, the full plan's): the text cannot
//! drift from the check.

use crate::peers::PeerKind;
use crate::plan::{Plan, ScenarioKind, fanout_label};
use crate::record::{Figures, Percentiles, RunRecord, Status};

/// The system the targets are for.
const OURS: PeerKind = PeerKind::Taskstream;
/// The system it is compared with, in the same run.
const THEIRS: PeerKind = PeerKind::Nchan;

/// A latency bound: the percentile, how to read it from the figures, and its bound (ms).
type Bound = (&'static str, fn(&Percentiles) -> f64, f64);

/// Subscribers of the reference fan-out.
const FANOUT: usize = 1_000;
/// Latency targets at [`FANOUT`] subscribers.
const FANOUT_BOUNDS: [Bound; 2] = [("p50", |p| p.p50, 2.0), ("p99", |p| p.p99, 5.0)];
/// Subscribers of the large fan-out.
const LARGE_FANOUT: usize = 5_000;
/// Latency target at [`LARGE_FANOUT`] subscribers.
const LARGE_FANOUT_BOUNDS: [Bound; 1] = [("p99", |p| p.p99, 20.0)];
/// Saturation must deliver this many times nchan's frames/s.
const SATURATION_FACTOR: f64 = 3.0;
/// The frames/s saturation aims at (reported, not checked).
const SATURATION_AIM: usize = 1_000_000;
/// Subscribers of the fan-out whose database queries/s are the baseline.
const QUERY_BASELINE: usize = 1;
/// Percent by which queries/s at [`FANOUT`] subscribers may exceed the baseline's.
const QUERY_GROWTH_PERCENT: f64 = 10.0;
/// Single-event `POST`s must reach this share of single-row `INSERT`s' rate (issue 13).
const POST_SHARE_OF_INSERT: f64 = 0.5;
/// Batches of 100 must reach this many times the single-event `POST` rate (issue 13).
const BATCH_FACTOR: f64 = 5.0;
/// `POST` → subscriber p50 may exceed `INSERT` → subscriber p50 by this much (ms, issue 13).
const POST_LATENCY_MARGIN_MS: f64 = 0.5;

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
    let runs = Runs(runs);
    let full = Plan::full();
    let mut out = vec![
        fanout_latency(&runs, &full, FANOUT, &FANOUT_BOUNDS),
        fanout_latency(&runs, &full, LARGE_FANOUT, &LARGE_FANOUT_BOUNDS),
        saturation(&runs, &full),
        idle_memory(&runs, &full),
        write_ceiling(&runs, &full),
        query_growth(&runs),
    ];
    out.extend(http_writes(&runs));
    out.extend(latency_against_theirs(&runs));
    out
}

/// Issue 13's targets for writes through the JSON API, at each writer count.
fn http_writes(runs: &Runs<'_>) -> Vec<TargetCheck> {
    let figures = runs.of(ScenarioKind::HttpWrites, OURS).map(|(_, f)| f);
    let get = |key: &str| figures.and_then(|f| f.extra.get(key).copied());
    let mut out = Vec::new();
    for writers in crate::http_writes::WRITERS {
        let post = get(&format!("post_b1_w{writers}_events_per_s"));
        let insert = get(&format!("insert_b1_w{writers}_events_per_s"));
        let target = format!(
            "single-event POSTs reach {POST_SHARE_OF_INSERT}× the single-row INSERT rate \
             ({writers} writers)"
        );
        out.push(match (post, insert) {
            (Some(post), Some(insert)) => TargetCheck {
                target,
                measured: format!("{post:.0} vs {insert:.0} events/s"),
                met: Some(post >= POST_SHARE_OF_INSERT * insert),
            },
            _ => unmeasured(target),
        });
        let batched = get(&format!("post_b100_w{writers}_events_per_s"));
        let target = format!(
            "POST batches of 100 reach {BATCH_FACTOR}× the single-event POST rate ({writers} \
             writers)"
        );
        out.push(match (batched, post) {
            (Some(batched), Some(post)) => TargetCheck {
                target,
                measured: format!("{batched:.0} vs {post:.0} events/s"),
                met: Some(batched >= BATCH_FACTOR * post),
            },
            _ => unmeasured(target),
        });
    }
    let target = format!(
        "POST → subscriber p50 within {POST_LATENCY_MARGIN_MS} ms of INSERT → subscriber p50"
    );
    out.push(
        match (
            get("post_to_subscriber_p50_ms"),
            get("insert_to_subscriber_p50_ms"),
        ) {
            (Some(post), Some(insert)) => TargetCheck {
                target,
                measured: format!("{post:.2} ms vs {insert:.2} ms"),
                met: Some(post <= insert + POST_LATENCY_MARGIN_MS),
            },
            _ => unmeasured(target),
        },
    );
    out
}

/// The runs of one benchmark, as the targets look them up: only runs that ended well count.
struct Runs<'a>(&'a [RunRecord]);

impl<'a> Runs<'a> {
    /// The figures of run `label` on `system`.
    fn labelled(&self, label: &str, system: PeerKind) -> Option<&'a Figures> {
        self.0
            .iter()
            .find(|r| r.label == label && r.system == system.name() && r.status == Status::Ok)
            .and_then(|r| r.figures.as_ref())
    }

    /// The first run of scenario `kind` on `system`, with its figures.
    fn of(&self, kind: ScenarioKind, system: PeerKind) -> Option<(&'a RunRecord, &'a Figures)> {
        self.0
            .iter()
            .find(|r| {
                r.scenario == kind.name() && r.system == system.name() && r.status == Status::Ok
            })
            .and_then(|r| r.figures.as_ref().map(|f| (r, f)))
    }
}

/// Latency at `subscribers` (one session, the full plan's rate) within every one of `bounds`.
fn fanout_latency(
    runs: &Runs<'_>,
    full: &Plan,
    subscribers: usize,
    bounds: &[Bound],
) -> TargetCheck {
    let target = format!(
        "fan-out {} subscribers at {} events/s: {}",
        thousands(subscribers),
        full.fanout_rate,
        list(bounds, |(name, _, bound)| format!("{name} ≤ {bound} ms"))
    );
    match runs
        .labelled(&fanout_label(subscribers), OURS)
        .and_then(|f| f.latency_ms)
    {
        Some(p) => TargetCheck {
            target,
            measured: list(bounds, |(name, pick, _)| {
                format!("{name} {:.2} ms", pick(&p))
            }),
            met: Some(bounds.iter().all(|(_, pick, bound)| pick(&p) <= *bound)),
        },
        None => unmeasured(target),
    }
}

/// One text per bound, comma-separated.
fn list(bounds: &[Bound], text: impl Fn(&Bound) -> String) -> String {
    bounds.iter().map(text).collect::<Vec<_>>().join(", ")
}

fn saturation(runs: &Runs<'_>, full: &Plan) -> TargetCheck {
    let target = |subscribers: usize| {
        format!(
            "saturation ({subscribers} subscribers): ≥ {SATURATION_FACTOR}× nginx+nchan's \
             frames/s (aim: {})",
            thousands(SATURATION_AIM)
        )
    };
    let ours = runs.of(ScenarioKind::Saturation, OURS);
    let theirs = runs.of(ScenarioKind::Saturation, THEIRS);
    match (ours, theirs) {
        (Some((run, ours)), Some((_, theirs))) => TargetCheck {
            target: target(run.clients),
            measured: format!(
                "{:.0} vs {:.0} frames/s ({:.2}×)",
                ours.frames_per_second,
                theirs.frames_per_second,
                ours.frames_per_second / theirs.frames_per_second.max(1.0)
            ),
            met: Some(ours.frames_per_second >= SATURATION_FACTOR * theirs.frames_per_second),
        },
        _ => unmeasured(target(full.saturation_subscribers)),
    }
}

fn idle_memory(runs: &Runs<'_>, full: &Plan) -> TargetCheck {
    let target =
        |streams: usize| format!("RSS per idle stream at {streams} streams ≤ nginx+nchan's");
    let ours = runs
        .of(ScenarioKind::Idle, OURS)
        .and_then(|(r, f)| Some((r, f.rss_per_stream_kib?)));
    let theirs = runs
        .of(ScenarioKind::Idle, THEIRS)
        .and_then(|(_, f)| f.rss_per_stream_kib);
    match (ours, theirs) {
        (Some((run, ours)), Some(theirs)) => TargetCheck {
            target: target(run.clients),
            measured: format!("{ours:.1} KiB vs {theirs:.1} KiB"),
            met: Some(ours <= theirs),
        },
        _ => unmeasured(target(full.idle_streams)),
    }
}

fn write_ceiling(runs: &Runs<'_>, full: &Plan) -> TargetCheck {
    let target = |writers: usize| {
        format!(
            "the write rate at which NOTIFY becomes the ceiling ({writers} writers, one session \
             each)"
        )
    };
    match runs.of(ScenarioKind::WriteCeiling, OURS) {
        Some((run, f)) => TargetCheck {
            target: target(run.sessions),
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
        None => unmeasured(target(full.ceiling_writers)),
    }
}

fn query_growth(runs: &Runs<'_>) -> TargetCheck {
    let target = format!(
        "database queries/s with {} subscribers within {QUERY_GROWTH_PERCENT} % of \
         {QUERY_BASELINE} subscriber",
        thousands(FANOUT)
    );
    let queries = |subscribers| {
        runs.labelled(&fanout_label(subscribers), OURS)
            .and_then(|f| f.server_queries_per_second)
    };
    match (queries(QUERY_BASELINE), queries(FANOUT)) {
        (Some(one), Some(many)) => TargetCheck {
            target,
            measured: format!("{many:.2} vs {one:.2} queries/s"),
            met: Some(many <= one * (1.0 + QUERY_GROWTH_PERCENT / 100.0) + f64::EPSILON),
        },
        _ => unmeasured(target),
    }
}

/// Every fan-out size both systems ran: latency no worse than theirs.
fn latency_against_theirs(runs: &Runs<'_>) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for run in runs
        .0
        .iter()
        .filter(|r| r.scenario == ScenarioKind::Fanout.name() && r.system == OURS.name())
    {
        let ours = run.figures.as_ref().and_then(|f| f.latency_ms);
        let theirs = runs.labelled(&run.label, THEIRS).and_then(|f| f.latency_ms);
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

fn unmeasured(target: String) -> TargetCheck {
    TargetCheck {
        target,
        measured: "not measured in this run".to_owned(),
        met: None,
    }
}

/// A count with thousands separators, as the issue writes its sizes: 1000 → "1,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
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
        assert_eq!(met("fan-out 5,000"), Some(None));
        assert_eq!(met("saturation"), Some(Some(true)));
        assert_eq!(met("fanout-1000: latency"), Some(Some(true)));
        assert!(markdown(&checks).contains("**missed**"));
    }

    #[test]
    fn a_statement_reads_the_same_whether_or_not_the_full_run_measured_it() {
        let plan = Plan::full();
        let kinds = [
            ScenarioKind::Fanout,
            ScenarioKind::Saturation,
            ScenarioKind::Idle,
            ScenarioKind::WriteCeiling,
            ScenarioKind::HttpWrites,
        ];
        let mut figures = Figures {
            server_queries_per_second: Some(1.0),
            rss_per_stream_kib: Some(1.0),
            ..latency(1.0, 1.0)
        };
        for path in ["post", "insert"] {
            for batch in crate::http_writes::BATCHES {
                for writers in crate::http_writes::WRITERS {
                    figures
                        .extra
                        .insert(format!("{path}_b{batch}_w{writers}_events_per_s"), 1.0);
                }
            }
            figures
                .extra
                .insert(format!("{path}_to_subscriber_p50_ms"), 1.0);
        }
        let runs: Vec<RunRecord> = plan
            .scenarios(&kinds)
            .into_iter()
            .flat_map(|scenario| {
                let (clients, sessions, target_rate) = scenario.shape(&plan);
                [OURS, THEIRS].map(|system| RunRecord {
                    scenario: scenario.name(),
                    label: scenario.label(&plan),
                    system: system.name().to_owned(),
                    clients,
                    sessions,
                    target_rate,
                    status: Status::Ok,
                    reason: None,
                    figures: Some(figures.clone()),
                })
            })
            .collect();
        let measured = check(&runs);
        let unmeasured = check(&[]);
        // Issue 4's six, and issue 13's two per writer count and one for latency.
        assert_eq!(
            unmeasured.len(),
            6 + 2 * crate::http_writes::WRITERS.len() + 1
        );
        for (measured, unmeasured) in measured.iter().zip(&unmeasured) {
            assert!(measured.met.is_some() || measured.target.contains("NOTIFY"));
            assert_ne!(measured.measured, unmeasured.measured);
            assert_eq!(measured.target, unmeasured.target);
        }
    }

    #[test]
    fn sizes_are_written_as_the_issue_writes_them() {
        assert_eq!(thousands(1), "1");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
