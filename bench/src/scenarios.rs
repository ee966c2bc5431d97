//! How one (scenario, system) run goes: a fresh database and a fresh server process, the
//! scenario's clients and writes (see [`crate::plan`] for what each scenario is), and the
//! measurements around its window.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Target;
use crate::dbstats::{self, DbCounters, Monitor, RunDb};
use crate::fleet::{Fleet, FleetReport};
use crate::h2_idle;
use crate::metrics::ServerCounters;
use crate::peers::{PeerKind, PeerSetup, RunningPeer};
use crate::pg::pg_error;
use crate::plan::{NOT_APPLICABLE, Plan, Scenario, ScenarioKind};
use crate::record::{Figures, Percentiles, RunRecord, Status, round3};
use crate::session::Session;
use crate::sysinfo::{self, ProcSample};
use crate::writer::{Pace, WriteReport, WriteSpec, Writer};

/// Inserts in flight on the writer's connection.
const WRITE_WINDOW: usize = 64;

/// Pause after the clients connect (or disconnect) so the server settles before a sample.
const SETTLE: Duration = Duration::from_millis(300);

/// Fewer clients than this and memory per stream is noise (allocator arenas, page
/// granularity), so it is not reported.
const MIN_CLIENTS_FOR_RSS: usize = 100;

/// How often the storm samples the server's database connections.
const CONNECTION_SAMPLE: Duration = Duration::from_millis(20);

/// Counters at one moment of a run.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    server: ProcSample,
    generator_cpu: f64,
    db_cpu: Option<f64>,
    counters: Option<ServerCounters>,
    db: DbCounters,
}

/// One (scenario, system) run in progress.
pub struct Run<'a> {
    plan: &'a Plan,
    monitor: &'a Monitor,
    /// The run's database.
    db: RunDb,
    /// The server under test.
    peer: RunningPeer,
    /// PostgreSQL's postmaster, for its CPU time.
    postgres_pid: Option<u32>,
    start: Option<Snapshot>,
    end: Option<Snapshot>,
    /// Events the writer committed inside the window (each its own transaction).
    written_in_window: u64,
    figures: Figures,
}

/// Runs `scenario` against `kind`; never panics on a failed run, it is recorded.
pub async fn run(
    plan: &Plan,
    monitor: &Monitor,
    setup: &PeerSetup,
    postgres_pid: Option<u32>,
    number: usize,
    scenario: Scenario,
    kind: PeerKind,
) -> RunRecord {
    let (clients, sessions, target_rate) = scenario.shape(plan);
    let mut record = RunRecord {
        scenario: scenario.name(),
        label: scenario.label(plan),
        system: kind.name().to_owned(),
        clients,
        sessions,
        target_rate,
        status: Status::Ok,
        reason: None,
        figures: None,
    };
    if let Some(reason) = scenario.not_for(kind) {
        record.status = Status::Skipped;
        record.reason = Some(format!("{NOT_APPLICABLE}: {reason}"));
        return record;
    }
    if scenario.kind == ScenarioKind::WriteCeiling && monitor.is_shared() {
        record.status = Status::Skipped;
        record.reason = Some(format!(
            "{NOT_APPLICABLE}: it disables a trigger, which it does only in a database of its \
             own"
        ));
        return record;
    }
    let db = match monitor.create(number).await {
        Ok(db) => db,
        Err(error) => {
            record.status = Status::Failed;
            record.reason = Some(error);
            return record;
        }
    };
    let started = tokio::task::block_in_place(|| setup.start(kind, &db.url));
    let peer = match started {
        Ok(peer) => peer,
        Err(error) => {
            // A peer that cannot run here is skipped; taskstream itself must run.
            record.status = if kind == PeerKind::Nchan {
                Status::Skipped
            } else {
                Status::Failed
            };
            record.reason = Some(error);
            let _ = monitor.release(&db).await;
            return record;
        }
    };
    // A real server has a warm pool: open a database connection before measuring, so that
    // the first query of a run does not pay for connecting (taskstream only; nchan has none).
    if kind != PeerKind::Nchan {
        let _ = crate::peers::get(peer.addr(), "/readyz").await;
    }
    let mut run = Run {
        plan,
        monitor,
        db,
        peer,
        postgres_pid,
        start: None,
        end: None,
        written_in_window: 0,
        figures: Figures::default(),
    };
    let outcome = match scenario.kind {
        ScenarioKind::Fanout => {
            let (rate, seconds) = (plan.fanout_rate, plan.fanout_seconds);
            run.live(scenario.subscribers, 1, steady(rate, seconds))
                .await
        }
        ScenarioKind::Saturation => {
            let spec = WriteSpec {
                events: plan.saturation_events,
                duration: None,
                pace: Pace::Max,
                window: WRITE_WINDOW,
            };
            run.live(plan.saturation_subscribers, 1, spec).await
        }
        ScenarioKind::Sessions => {
            let spec = steady(plan.sessions_rate, plan.sessions_seconds);
            run.live(plan.sessions * 2, plan.sessions, spec).await
        }
        ScenarioKind::Idle => run.idle().await,
        ScenarioKind::IdleH2 => run.idle_h2().await,
        ScenarioKind::Storm => run.storm().await,
        ScenarioKind::Replay => run.replay().await,
        ScenarioKind::WriteCeiling => run.write_ceiling().await,
        ScenarioKind::HttpWrites => run.http_writes().await,
        ScenarioKind::Multi => run.multi(scenario.subscribers).await,
    };
    if let Err(error) = run.peer.check_alive() {
        record.status = Status::Failed;
        record.reason = Some(error);
    }
    let mut figures = run.finish_figures(clients);
    if let Err(error) = outcome {
        record.status = Status::Failed;
        record.reason.get_or_insert(error);
    }
    if !figures.tally.is_exact() {
        record.status = Status::Failed;
        record.reason.get_or_insert_with(|| {
            format!(
                "{} events lost and {} duplicated over all clients (worst client: {:?})",
                figures.tally.lost, figures.tally.duplicated, figures.worst_client
            )
        });
    }
    figures.seconds = round3(figures.seconds);
    record.figures = Some(figures);
    let Run { peer, db, .. } = run;
    tokio::task::block_in_place(|| peer.stop());
    let _ = monitor.release(&db).await;
    record
}

fn steady(rate: f64, seconds: f64) -> WriteSpec {
    WriteSpec {
        events: (rate * seconds).round() as u64,
        duration: None,
        pace: Pace::Rate(rate),
        window: WRITE_WINDOW,
    }
}

fn millis(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

impl Run<'_> {
    /// Subscribers on `sessions` sessions (client i reads session i mod sessions), then a
    /// write batch, then wait until every client has every event.
    async fn live(
        &mut self,
        clients: usize,
        sessions: usize,
        spec: WriteSpec,
    ) -> Result<(), String> {
        let sessions = Arc::new(Session::many(&self.db.prefix, sessions));
        let mut writer = self.writer(&sessions).await?;
        self.figures.rss_before_kib = self.sample().rss_kib;
        let fleet = self.fleet(&sessions, clients, true);
        let connected = self.connect(&fleet).await;
        let result = async {
            connected?;
            self.figures.rss_connected_kib = self.sample().rss_kib;
            self.mark_start().await;
            let written = writer.write(spec).await?;
            self.written_in_window += written.events;
            fleet.set_targets(writer.committed());
            let caught_up = fleet
                .wait_caught_up(catch_up_timeout(clients, &written))
                .await;
            self.figures.writer = Some(written);
            caught_up.map_err(|reached| {
                format!("only {reached} of {clients} clients caught up before the deadline")
            })?;
            writer.verify_table().await
        }
        .await;
        self.mark_end().await;
        let report = fleet.stop().await;
        self.take_fleet(report, true);
        result
    }

    /// Streams that only receive keep-alives: memory per stream.
    async fn idle(&mut self) -> Result<(), String> {
        let streams = self.plan.idle_streams;
        let sessions = Arc::new(Session::many(&self.db.prefix, 1));
        let writer = self.writer(&sessions).await?;
        tokio::time::sleep(SETTLE).await;
        self.figures.rss_before_kib = self.sample().rss_kib;
        let fleet = self.fleet(&sessions, streams, true);
        let result = async {
            self.connect(&fleet).await?;
            // The window is the hold: keep-alives only, after every stream has opened.
            self.mark_start().await;
            tokio::time::sleep(Duration::from_secs_f64(self.plan.idle_seconds)).await;
            self.figures.rss_connected_kib = self.sample().rss_kib;
            fleet.set_targets(writer.committed());
            Ok(())
        }
        .await;
        self.mark_end().await;
        let report = fleet.stop().await;
        self.take_fleet(report, false);
        result
    }

    /// Idle streams over HTTP/2, many per connection: memory per stream.
    async fn idle_h2(&mut self) -> Result<(), String> {
        let plan = self.plan;
        let sessions = Arc::new(Session::many(&self.db.prefix, 1));
        let _writer = self.writer(&sessions).await?;
        tokio::time::sleep(SETTLE).await;
        self.figures.rss_before_kib = self.sample().rss_kib;
        let per_connection = plan.h2_streams.div_ceil(plan.h2_connections);
        let timeout = Duration::from_secs(30) + Duration::from_millis(plan.h2_streams as u64 * 5);
        let path = self.peer.stream_path(&sessions[0]);
        let addr = self.peer.addr();
        let idle = h2_idle::open(addr, &path, plan.h2_connections, per_connection, timeout).await?;
        tokio::time::sleep(SETTLE).await;
        self.mark_start().await;
        tokio::time::sleep(Duration::from_secs_f64(plan.idle_seconds)).await;
        self.figures.rss_connected_kib = self.sample().rss_kib;
        self.mark_end().await;
        idle.close().await;
        Ok(())
    }

    /// Everyone drops, events are written meanwhile, everyone resumes at once.
    async fn storm(&mut self) -> Result<(), String> {
        let plan = self.plan;
        let clients = plan.storm_clients;
        let sessions = Arc::new(Session::many(&self.db.prefix, 1));
        let mut writer = self.writer(&sessions).await?;
        self.figures.rss_before_kib = self.sample().rss_kib;
        let fleet = self.fleet(&sessions, clients, false);
        let connected = self.connect(&fleet).await;
        let result = async {
            connected?;
            self.figures.rss_connected_kib = self.sample().rss_kib;
            writer
                .write(steady(100.0, plan.storm_before as f64 / 100.0))
                .await?;
            fleet.set_targets(writer.committed());
            fleet
                .wait_caught_up(catch_up_timeout(clients, &WriteReport::default()))
                .await
                .map_err(|n| format!("before the drop, only {n} of {clients} caught up"))?;
            fleet.drop_connections();
            tokio::time::sleep(SETTLE).await;
            let during = writer
                .write(WriteSpec {
                    events: plan.storm_during,
                    duration: None,
                    pace: Pace::Max,
                    window: WRITE_WINDOW,
                })
                .await?;
            self.figures.writer = Some(during);
            writer.verify_table().await?;
            fleet.set_targets(writer.committed());
            self.mark_start().await;
            let resumed_at = Instant::now();
            fleet.resume();
            let sampling = self.sample_connections(&fleet, catch_up_timeout(clients, &during));
            let (caught_up, most) = sampling.await;
            self.figures.db_connections_max = most;
            caught_up.map_err(|n| format!("after the storm, only {n} of {clients} caught up"))?;
            Ok(resumed_at)
        }
        .await;
        self.mark_end().await;
        let report = fleet.stop().await;
        if let Ok(resumed_at) = &result {
            let last = report.each.iter().filter_map(|c| c.caught_up_at).max();
            if let Some(last) = last {
                let all = last.saturating_duration_since(*resumed_at);
                self.figures.extra.insert("catch_up_ms".into(), millis(all));
                self.figures.seconds = all.as_secs_f64();
                // Each client receives exactly the events written while it was away.
                let frames = (clients as u64 * plan.storm_during) as f64;
                if all.as_secs_f64() > 0.0 {
                    self.figures.frames_per_second = round3(frames / all.as_secs_f64());
                }
            }
        }
        self.take_fleet(report, false);
        result.map(|_| ())
    }

    /// A long stored session read by new clients, one after the other.
    async fn replay(&mut self) -> Result<(), String> {
        let plan = self.plan;
        let sessions = Arc::new(Session::many(&self.db.prefix, 1));
        let mut writer = self.writer(&sessions).await?;
        let written = writer
            .write(WriteSpec {
                events: plan.replay_events,
                duration: None,
                pace: Pace::Max,
                window: WRITE_WINDOW,
            })
            .await?;
        self.figures.writer = Some(written);
        writer.verify_table().await?;
        tokio::time::sleep(SETTLE).await;
        self.figures.rss_before_kib = self.sample().rss_kib;
        self.mark_start().await;
        let mut first_event = Vec::new();
        let mut caught_up = Vec::new();
        let mut result = Ok(());
        let mut total = FleetReport::empty();
        for _ in 0..plan.replay_clients {
            let fleet = self.fleet(&sessions, 1, false);
            fleet.set_targets(writer.committed());
            let started = Instant::now();
            let waited = fleet
                .wait_caught_up(catch_up_timeout(1, &written))
                .await
                .map_err(|_| "the replay did not finish before the deadline".to_owned());
            let report = fleet.stop().await;
            if let Some(client) = report.each.first() {
                if let Some(after) = client.first_event_after {
                    first_event.push(millis(after));
                }
                if let Some(at) = client.caught_up_at {
                    caught_up.push(millis(at.saturating_duration_since(started)));
                }
            }
            total.merge(report);
            if waited.is_err() {
                result = waited;
                break;
            }
        }
        self.mark_end().await;
        self.take_fleet(total, false);
        for (name, mut values) in [("first_event_ms", first_event), ("caught_up_ms", caught_up)] {
            values.sort_by(f64::total_cmp);
            if let Some(&median) = values.get(values.len().saturating_sub(1) / 2) {
                self.figures.extra.insert(format!("{name}_median"), median);
            }
            if let Some(&max) = values.last() {
                self.figures.extra.insert(format!("{name}_max"), max);
            }
        }
        // frames/s of a replay: events read per second of catching up.
        if let Some(&median) = self.figures.extra.get("caught_up_ms_median")
            && median > 0.0
        {
            self.figures.frames_per_second = round3(plan.replay_events as f64 / (median / 1000.0));
        }
        result
    }

    /// `multi_clients` clients watch the same `multi_tasks` tasks, each over one multi-task
    /// stream (`streams` 1) or over one stream per task, while the tasks are written at
    /// `multi_rate` in total; then every client must have every event of every task. Memory
    /// is per client, CPU per delivered frame.
    async fn multi(&mut self, streams: usize) -> Result<(), String> {
        let plan = self.plan;
        let sessions = Arc::new(Session::many(&self.db.prefix, plan.multi_tasks));
        let mut writer = self.writer(&sessions).await?;
        tokio::time::sleep(SETTLE).await;
        self.figures.rss_before_kib = self.sample().rss_kib;
        let all: Vec<usize> = (0..sessions.len()).collect();
        let tasks: Vec<String> = sessions.iter().map(|s| s.task.clone()).collect();
        let query: Vec<String> = tasks.iter().map(|t| format!("task={t}")).collect();
        let targets = (0..plan.multi_clients)
            .flat_map(|_| {
                if streams == 1 {
                    vec![Target {
                        path: format!("/events/stream?{}", query.join("&")),
                        sessions: all.clone(),
                        tasks: tasks.clone(),
                    }]
                } else {
                    all.iter()
                        .map(|&session| Target {
                            path: self.peer.stream_path(&sessions[session]),
                            sessions: vec![session],
                            tasks: Vec::new(),
                        })
                        .collect()
                }
            })
            .collect();
        let fleet = Fleet::start(self.peer.addr(), targets, sessions.len(), true);
        let connected = self.connect(&fleet).await;
        let result = async {
            connected?;
            self.figures.rss_connected_kib = self.sample().rss_kib;
            self.mark_start().await;
            let written = writer
                .write(steady(plan.multi_rate, plan.multi_seconds))
                .await?;
            self.written_in_window += written.events;
            fleet.set_targets(writer.committed());
            let timeout = catch_up_timeout(plan.multi_clients, &written);
            let caught_up = fleet.wait_caught_up(timeout).await;
            self.figures.writer = Some(written);
            caught_up.map_err(|n| format!("only {n} streams caught up before the deadline"))?;
            writer.verify_table().await
        }
        .await;
        self.mark_end().await;
        let report = fleet.stop().await;
        self.take_fleet(report, true);
        let grown = self.figures.rss_connected_kib as f64 - self.figures.rss_before_kib as f64;
        let extra = &mut self.figures.extra;
        extra.insert(
            "rss_per_client_kib".into(),
            round3(grown / plan.multi_clients as f64),
        );
        extra.insert("streams_per_client".into(), streams as f64);
        result
    }

    /// Writers on their own sessions at full speed for a while: with the NOTIFY trigger in the
    /// default payload mode (the event itself), then in the address-only mode (every listening
    /// instance reads each event back), then without the trigger; and what the MAC of one
    /// notification costs PostgreSQL.
    async fn write_ceiling(&mut self) -> Result<(), String> {
        let plan = self.plan;
        let sessions: Vec<Arc<Vec<Session>>> = (0..plan.ceiling_writers)
            .map(|w| Arc::new(Session::many(&format!("{}w{w}", self.db.prefix), 1)))
            .collect();
        let mut writers = Vec::new();
        for own in &sessions {
            writers.push(self.writer(own).await?);
        }
        let spec = WriteSpec {
            events: u64::MAX,
            duration: Some(Duration::from_secs_f64(plan.ceiling_seconds)),
            pace: Pace::Max,
            window: WRITE_WINDOW,
        };
        self.mark_start().await;
        let with_notify = write_all(&mut writers, spec).await?;
        let owner = writers[0].client();
        dbstats::set_notify_payload(owner, "address").await?;
        let address_only = write_all(&mut writers, spec).await;
        dbstats::set_notify_payload(writers[0].client(), "event").await?;
        let address_only = address_only?;
        writers[0]
            .client()
            .batch_execute("ALTER TABLE agent_events DISABLE TRIGGER agent_events_notify")
            .await
            .map_err(|e| format!("disable the notify trigger: {}", pg_error(&e)))?;
        let without_notify = write_all(&mut writers, spec).await?;
        let mac_us = dbstats::mac_micros(writers[0].client()).await?;
        self.mark_end().await;
        self.written_in_window += with_notify.events + address_only.events + without_notify.events;
        let extra = &mut self.figures.extra;
        extra.insert("writes_per_s_notify".into(), with_notify.rate.round());
        extra.insert(
            "writes_per_s_address_only".into(),
            address_only.rate.round(),
        );
        extra.insert("writes_per_s_no_notify".into(), without_notify.rate.round());
        extra.insert("mac_us_per_insert".into(), round3(mac_us));
        self.figures.writer = Some(with_notify);
        Ok(())
    }

    /// Writes through the JSON API against direct SQL, and their latency to a subscriber
    /// (see [`crate::http_writes`]).
    async fn http_writes(&mut self) -> Result<(), String> {
        let plan = self.plan;
        self.mark_start().await;
        let measured = crate::http_writes::measure(
            self.peer.addr(),
            &self.db.url,
            &self.db.prefix,
            plan.http_writes_seconds,
            plan.http_latency_events,
        )
        .await;
        self.mark_end().await;
        let (figures, written) = measured?;
        self.written_in_window += written;
        self.figures.extra.extend(figures);
        Ok(())
    }

    // --- helpers ---

    async fn writer(&self, sessions: &Arc<Vec<Session>>) -> Result<Writer, String> {
        let writer = Writer::connect(&self.db.url, sessions.clone(), self.peer.publisher()).await?;
        dbstats::create_tasks(writer.client(), sessions).await?;
        Ok(writer)
    }

    fn fleet(&self, sessions: &[Session], clients: usize, record_latency: bool) -> Fleet {
        let targets = (0..clients)
            .map(|i| {
                let session = i % sessions.len();
                Target {
                    path: self.peer.stream_path(&sessions[session]),
                    sessions: vec![session],
                    tasks: Vec::new(),
                }
            })
            .collect();
        Fleet::start(self.peer.addr(), targets, sessions.len(), record_latency)
    }

    async fn connect(&self, fleet: &Fleet) -> Result<(), String> {
        let timeout = Duration::from_secs(30) + Duration::from_millis(fleet.len() as u64 * 5);
        fleet.wait_connected(timeout).await.map_err(|n| {
            format!(
                "only {n} of {} clients connected before the deadline",
                fleet.len()
            )
        })?;
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }

    /// Waits for the fleet to catch up while sampling the server's database connections.
    async fn sample_connections(
        &self,
        fleet: &Fleet,
        timeout: Duration,
    ) -> (Result<(), usize>, Option<i64>) {
        let mut most: Option<i64> = None;
        let wait = fleet.wait_caught_up(timeout);
        tokio::pin!(wait);
        let mut tick = tokio::time::interval(CONNECTION_SAMPLE);
        loop {
            tokio::select! {
                done = &mut wait => {
                    if let Ok(n) = self.monitor.server_connections(&self.db.name).await {
                        most = Some(most.map_or(n, |m| m.max(n)));
                    }
                    return (done, most);
                }
                _ = tick.tick() => {
                    if let Ok(n) = self.monitor.server_connections(&self.db.name).await {
                        most = Some(most.map_or(n, |m| m.max(n)));
                    }
                }
            }
        }
    }

    fn sample(&self) -> ProcSample {
        sysinfo::sample(&self.peer.pids())
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            server: self.sample(),
            generator_cpu: sysinfo::own_cpu_seconds(),
            db_cpu: self.postgres_pid.map(sysinfo::tree_cpu_seconds),
            counters: self.peer.counters().await,
            db: self
                .monitor
                .counters(&self.db.name)
                .await
                .unwrap_or_default(),
        }
    }

    async fn mark_start(&mut self) {
        self.start = Some(self.snapshot().await);
    }

    async fn mark_end(&mut self) {
        if self.start.is_some() {
            self.end = Some(self.snapshot().await);
        }
    }

    /// Takes the clients' figures; `window_from_catch_up`: the window ends when the last
    /// client caught up (live runs), rather than at the end mark.
    fn take_fleet(&mut self, report: FleetReport, window_from_catch_up: bool) {
        let f = &mut self.figures;
        f.frames = report.frames;
        f.bytes = report.bytes;
        f.latency_ms = Percentiles::of(&report.latency);
        f.tally = report.tally;
        f.worst_client = report.worst;
        f.reconnects = report.reconnects;
        f.first_client_error = report.first_error;
        if window_from_catch_up
            && let Some(start) = &self.start
            && let Some(last) = report.each.iter().filter_map(|c| c.caught_up_at).max()
        {
            f.seconds = last.saturating_duration_since(start.at).as_secs_f64();
        }
    }

    /// Combines the marks into the run's figures.
    fn finish_figures(&mut self, clients: usize) -> Figures {
        let mut f = std::mem::take(&mut self.figures);
        f.server_measured = !self.peer.pids().is_empty();
        f.server_peak_rss_kib = self.sample().hwm_kib;
        if let (Some(start), Some(end)) = (&self.start, &self.end) {
            let window = end.at.saturating_duration_since(start.at).as_secs_f64();
            if f.seconds <= 0.0 {
                f.seconds = window;
            }
            f.server_cpu_seconds = round3(end.server.cpu_seconds - start.server.cpu_seconds);
            f.generator_cpu_seconds = round3(end.generator_cpu - start.generator_cpu);
            f.db_cpu_seconds = match (start.db_cpu, end.db_cpu) {
                (Some(a), Some(b)) => Some(round3(b - a)),
                _ => None,
            };
            if let (Some(a), Some(b)) = (&start.counters, &end.counters) {
                let delta = a.delta(b);
                if window > 0.0 {
                    f.server_queries_per_second = Some(round3(delta.queries / window));
                }
                f.server_counters = Some(delta);
            }
            f.db_xact_commit = end.db.xact_commit - start.db.xact_commit;
            if window > 0.0 {
                f.db_xact_per_second = round3(f.db_xact_commit as f64 / window);
                let queries = f.server_counters.map_or(0.0, |c| c.queries);
                f.db_transactions_per_second =
                    round3((self.written_in_window as f64 + queries) / window);
            }
        }
        if f.frames > 0 && f.seconds > 0.0 && f.frames_per_second == 0.0 {
            f.frames_per_second = round3(f.frames as f64 / f.seconds);
        }
        if f.server_measured && clients >= MIN_CLIENTS_FOR_RSS && f.rss_connected_kib > 0 {
            let grown = f.rss_connected_kib as f64 - f.rss_before_kib as f64;
            f.rss_per_stream_kib = Some(round3(grown / clients as f64));
        }
        f
    }
}

/// Runs every writer's batch at once; the combined rate.
pub async fn write_all(writers: &mut [Writer], spec: WriteSpec) -> Result<WriteReport, String> {
    let reports = futures_util::future::join_all(writers.iter_mut().map(|w| w.write(spec))).await;
    let mut total = WriteReport::default();
    for report in reports {
        let report = report?;
        total.events += report.events;
        total.seconds = total.seconds.max(report.seconds);
    }
    if total.seconds > 0.0 {
        total.rate = total.events as f64 / total.seconds;
    }
    Ok(total)
}

/// How long clients may take to catch up after a batch: generous, since a shared machine can
/// be slow, but bounded so that a lost event fails the run instead of hanging it.
fn catch_up_timeout(clients: usize, written: &WriteReport) -> Duration {
    let frames = written.events.saturating_mul(clients.max(1) as u64);
    // At worst 20,000 frames a second, plus half a minute.
    Duration::from_secs(30) + Duration::from_millis(frames / 20)
}
