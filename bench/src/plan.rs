//! The scenarios and their sizes: the committed full run (issue 4's sizes) and the `--quick`
//! smoke run, and which systems each applies to.
//!
//! - **fanout-N**: one session, N subscribers, a steady write rate.
//! - **saturation**: one session, many subscribers, the writer as fast as it can go.
//! - **sessions**: many sessions × 2 subscribers each, a steady total write rate.
//! - **idle**: N open streams that receive nothing but keep-alives: memory per stream.
//! - **idle-h2**: the same over HTTP/2, many streams per connection (issue 18's 10,000 streams
//!   on 100 connections).
//! - **storm**: N clients drop at once, events are written while they are away, and all
//!   resume with `Last-Event-ID` at once: time until all are caught up, database connections.
//! - **replay**: a session of N stored events read by a new client: time to first event and
//!   to caught up.
//! - **write-ceiling**: the insert rate PostgreSQL sustains with the schema's NOTIFY trigger
//!   (in both payload modes: the event, or its address only) and without it (NOTIFY serialises
//!   commits behind one lock), and what the notification's MAC costs per insert.
//! - **http-writes**: events/s through `POST /tasks/{id}/events` (batches of 1 and 100, 1/4/16
//!   writers) against direct SQL `INSERT`s, and `POST` → subscriber latency against
//!   `INSERT` → subscriber.
//! - **multi-100**: N clients each watch the same 100 running tasks over one multi-task stream,
//!   against the same N clients opening 100 single streams each (`multi-100-singles`), at the
//!   same write rate: memory per client, server CPU per delivered frame, latency.

use crate::peers::PeerKind;

/// How the reason of a run skipped because the scenario does not apply to it begins.
pub const NOT_APPLICABLE: &str = "not applicable";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// One session, N subscribers, steady rate.
    Fanout,
    /// One session, many subscribers, writer at full speed.
    Saturation,
    /// Many sessions, two subscribers each.
    Sessions,
    /// Open streams with keep-alives only.
    Idle,
    /// Open streams with keep-alives only, many per HTTP/2 connection.
    IdleH2,
    /// Everyone drops and resumes at once.
    Storm,
    /// A long stored session read from the start.
    Replay,
    /// Insert rate with and without the NOTIFY trigger.
    WriteCeiling,
    /// Writes through the JSON API against direct SQL.
    HttpWrites,
    /// Many tasks per connection against one connection per task.
    Multi,
}

/// The sizes of every scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Subscriber counts of the fan-out runs.
    pub fanout_subscribers: Vec<usize>,
    /// Events per second in fan-out.
    pub fanout_rate: f64,
    /// Seconds of writing in fan-out.
    pub fanout_seconds: f64,
    /// Subscribers in the saturation run.
    pub saturation_subscribers: usize,
    /// Events written as fast as possible in the saturation run.
    pub saturation_events: u64,
    /// Sessions in the many-sessions run (two subscribers each).
    pub sessions: usize,
    /// Total events per second over all sessions.
    pub sessions_rate: f64,
    /// Seconds of writing in the many-sessions run.
    pub sessions_seconds: f64,
    /// Open streams in the idle run.
    pub idle_streams: usize,
    /// Seconds the idle streams are held (both protocols).
    pub idle_seconds: f64,
    /// Open streams in the HTTP/2 idle run.
    pub h2_streams: usize,
    /// The HTTP/2 connections that carry them.
    pub h2_connections: usize,
    /// Clients in the storm.
    pub storm_clients: usize,
    /// Events before the drop (at 100/s).
    pub storm_before: u64,
    /// Events written while every client is away.
    pub storm_during: u64,
    /// Stored events in the replay.
    pub replay_events: u64,
    /// Clients that replay it, one after the other.
    pub replay_clients: usize,
    /// Writer connections (one session each) in the write-ceiling run.
    pub ceiling_writers: usize,
    /// Seconds each write-ceiling measurement lasts.
    pub ceiling_seconds: f64,
    /// Seconds each http-writes throughput measurement lasts.
    pub http_writes_seconds: f64,
    /// Events written one at a time in each http-writes latency run.
    pub http_latency_events: u64,
    /// Clients of the multi-task run.
    pub multi_clients: usize,
    /// Tasks each of them watches (over one stream, or one stream each).
    pub multi_tasks: usize,
    /// Events per second over all tasks in the multi-task run.
    pub multi_rate: f64,
    /// Seconds of writing in the multi-task run.
    pub multi_seconds: f64,
}

impl Plan {
    /// The committed full run (issue 4's sizes).
    pub fn full() -> Plan {
        Plan {
            fanout_subscribers: vec![1, 100, 1_000, 5_000, 10_000],
            fanout_rate: 100.0,
            fanout_seconds: 10.0,
            saturation_subscribers: 1_000,
            saturation_events: 5_000,
            sessions: 1_000,
            sessions_rate: 1_000.0,
            sessions_seconds: 10.0,
            idle_streams: 10_000,
            idle_seconds: 12.0,
            h2_streams: 10_000,
            h2_connections: 100,
            storm_clients: 2_000,
            storm_before: 200,
            storm_during: 1_000,
            replay_events: 10_000,
            replay_clients: 5,
            ceiling_writers: 4,
            ceiling_seconds: 5.0,
            http_writes_seconds: 3.0,
            http_latency_events: 1_000,
            multi_clients: 50,
            multi_tasks: 100,
            multi_rate: 500.0,
            multi_seconds: 10.0,
        }
    }

    /// The smoke run: every scenario, small and short.
    pub fn quick() -> Plan {
        Plan {
            fanout_subscribers: vec![1, 50],
            fanout_rate: 100.0,
            fanout_seconds: 1.0,
            saturation_subscribers: 50,
            saturation_events: 500,
            sessions: 25,
            sessions_rate: 100.0,
            sessions_seconds: 1.0,
            idle_streams: 200,
            idle_seconds: 0.5,
            h2_streams: 200,
            h2_connections: 4,
            storm_clients: 100,
            storm_before: 20,
            storm_during: 100,
            replay_events: 1_000,
            replay_clients: 2,
            ceiling_writers: 2,
            ceiling_seconds: 0.5,
            http_writes_seconds: 0.3,
            http_latency_events: 50,
            multi_clients: 3,
            multi_tasks: 100,
            multi_rate: 200.0,
            multi_seconds: 1.0,
        }
    }

    /// The runs of `kinds`, in order.
    pub fn scenarios(&self, kinds: &[ScenarioKind]) -> Vec<Scenario> {
        let mut out = Vec::new();
        for &kind in kinds {
            if kind == ScenarioKind::Fanout {
                for &subscribers in &self.fanout_subscribers {
                    out.push(Scenario { kind, subscribers });
                }
            } else if kind == ScenarioKind::Multi {
                // Streams per client: one multi-task stream, then one stream per task.
                for subscribers in [1, self.multi_tasks] {
                    out.push(Scenario { kind, subscribers });
                }
            } else {
                out.push(Scenario {
                    kind,
                    subscribers: 0,
                });
            }
        }
        out
    }
}

/// One scenario, sized.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Which.
    pub kind: ScenarioKind,
    /// Fan-out: the subscribers of the one session; multi: the streams per client (1: one
    /// multi-task stream, else one stream per task).
    pub subscribers: usize,
}

impl Scenario {
    /// The scenario kind's name (as on the command line).
    pub fn name(self) -> String {
        self.kind.name()
    }

    /// Its label with its size.
    pub fn label(self, plan: &Plan) -> String {
        match self.kind {
            ScenarioKind::Fanout => fanout_label(self.subscribers),
            ScenarioKind::Saturation => format!("saturation-{}", plan.saturation_subscribers),
            ScenarioKind::Sessions => format!("sessions-{}x2", plan.sessions),
            ScenarioKind::Idle => format!("idle-{}", plan.idle_streams),
            ScenarioKind::IdleH2 => {
                format!("idle-h2-{}x{}", plan.h2_streams, plan.h2_connections)
            }
            ScenarioKind::Storm => format!("storm-{}", plan.storm_clients),
            ScenarioKind::Replay => format!("replay-{}", plan.replay_events),
            ScenarioKind::WriteCeiling => format!("write-ceiling-{}w", plan.ceiling_writers),
            ScenarioKind::HttpWrites => "http-writes".to_owned(),
            ScenarioKind::Multi if self.subscribers == 1 => format!("multi-{}", plan.multi_tasks),
            ScenarioKind::Multi => format!("multi-{}-singles", plan.multi_tasks),
        }
    }

    /// (clients, sessions, target rate).
    pub fn shape(self, plan: &Plan) -> (usize, usize, Option<f64>) {
        match self.kind {
            ScenarioKind::Fanout => (self.subscribers, 1, Some(plan.fanout_rate)),
            ScenarioKind::Saturation => (plan.saturation_subscribers, 1, None),
            ScenarioKind::Sessions => (plan.sessions * 2, plan.sessions, Some(plan.sessions_rate)),
            ScenarioKind::Idle => (plan.idle_streams, 1, None),
            ScenarioKind::IdleH2 => (plan.h2_streams, 1, None),
            ScenarioKind::Storm => (plan.storm_clients, 1, None),
            ScenarioKind::Replay => (plan.replay_clients, 1, None),
            ScenarioKind::WriteCeiling => (0, plan.ceiling_writers, None),
            ScenarioKind::HttpWrites => (1, 2, None),
            ScenarioKind::Multi => (
                plan.multi_clients * self.subscribers,
                plan.multi_tasks,
                Some(plan.multi_rate),
            ),
        }
    }

    /// Why `peer` does not take part, if it does not.
    pub fn not_for(self, peer: PeerKind) -> Option<&'static str> {
        match self.kind {
            _ if peer == PeerKind::Taskstream => None,
            ScenarioKind::WriteCeiling => Some(
                "measures PostgreSQL's insert path with taskstream listening; the other systems \
                 add nothing to it",
            ),
            ScenarioKind::HttpWrites => Some("measures taskstream's own JSON API"),
            ScenarioKind::IdleH2 if peer == PeerKind::Nchan => {
                Some("the nginx peer is configured for HTTP/1.1 only")
            }
            ScenarioKind::Multi if peer == PeerKind::Nchan => {
                Some("compares taskstream's multi-task stream with its own single streams")
            }
            _ => None,
        }
    }
}

/// The label of the fan-out run with `subscribers` subscribers.
pub fn fanout_label(subscribers: usize) -> String {
    format!("fanout-{subscribers}")
}

impl ScenarioKind {
    /// Its name, as on the command line and in the results.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}
