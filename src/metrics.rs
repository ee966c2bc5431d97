//! The server's counters: read by tests through [`crate::Handle`] and served at `GET /metrics`
//! in the Prometheus text format (prometheus-client: atomics underneath, and a maintained
//! encoder of the exposition format instead of one of ours).

use std::fmt::Write;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The kinds of database query, for counting and timing them.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum QueryKind {
    /// One task's status and latest session.
    Position,
    /// The batched poll: the positions of every watched task at once.
    Positions,
    /// A page of a session's events.
    Events,
    /// The task list of the index page.
    Tasks,
    /// One task's title and status, for its viewer page.
    Task,
    /// The readiness probe.
    Ping,
    /// `pg_notification_queue_usage()`, read when `/metrics` is scraped.
    QueueUsage,
    /// A batch of events written through `POST /tasks/{id}/events`.
    WriteEvents,
    /// A task created or updated through `PUT /tasks/{id}`.
    PutTask,
    /// Expired idempotency keys pruned, and the start-up check of the write privileges.
    Upkeep,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum EndReason {
    /// The task left `InProgress` (or was deleted) and `complete` was sent.
    Complete,
    /// The client went away.
    ClientGone,
    /// The client accepted nothing for the write timeout.
    Slow,
    /// The server is shutting down.
    Shutdown,
    /// The client's token expired.
    TokenExpired,
    /// The stream reached its maximum lifetime (rebalancing).
    Lifetime,
    /// A database error cut the stream short; the client resumes by cursor.
    Error,
}

impl QueryKind {
    /// Every kind, for totals.
    pub const ALL: [QueryKind; 10] = [
        QueryKind::Position,
        QueryKind::Positions,
        QueryKind::Events,
        QueryKind::Tasks,
        QueryKind::Task,
        QueryKind::Ping,
        QueryKind::QueueUsage,
        QueryKind::WriteEvents,
        QueryKind::PutTask,
        QueryKind::Upkeep,
    ];

    /// The label value (Prometheus style: lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Position => "position",
            QueryKind::Positions => "positions",
            QueryKind::Events => "events",
            QueryKind::Tasks => "tasks",
            QueryKind::Task => "task",
            QueryKind::Ping => "ping",
            QueryKind::QueueUsage => "queue_usage",
            QueryKind::WriteEvents => "write_events",
            QueryKind::PutTask => "put_task",
            QueryKind::Upkeep => "upkeep",
        }
    }
}

impl EndReason {
    /// The label value, also used in the log line of a stream's end.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Complete => "complete",
            EndReason::ClientGone => "client_gone",
            EndReason::Slow => "slow",
            EndReason::Shutdown => "shutdown",
            EndReason::TokenExpired => "token_expired",
            EndReason::Lifetime => "lifetime",
            EndReason::Error => "error",
        }
    }
}

impl EncodeLabelValue for QueryKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for EndReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Label set of [`Metrics::queries`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Which query.
    pub kind: QueryKind,
}

/// Label set of [`Metrics::stream_ends`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    /// Why the stream ended.
    pub reason: EndReason,
}

/// Every counter of one server. Cheap to update from any task (atomics).
#[derive(Debug)]
pub struct Metrics {
    /// Open client connections (HTTP/1 or HTTP/2, streaming or not).
    pub connections: Gauge,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused: Counter,
    /// Bytes of frames held for clients: queued by their stream tasks and not yet taken by
    /// their connections. At most `--replay-bytes` (or one larger frame) per stream.
    pub client_buffer_bytes: Gauge,
    /// Streams whose stream task is running.
    pub open_streams: Gauge,
    /// Tails in the hub (watched tasks).
    pub live_tails: Gauge,
    /// Event frames handed to clients' buffers (replayed and live).
    pub events_sent: Counter,
    /// Streams ended, by reason.
    pub stream_ends: Family<EndLabels, Counter>,
    /// Times a live stream fell behind its tail (it lagged, or saw a gap) and caught up from
    /// the table instead of buffering.
    pub catch_ups: Counter,
    /// Client reads (stream starts, replays) waiting for their turn on the pool.
    pub reads_waiting: Gauge,
    /// Database queries, by kind.
    pub queries: Family<QueryLabels, Counter>,
    /// Database query latency, by kind.
    pub query_seconds: Family<QueryLabels, Histogram>,
    /// Notifications received on the LISTEN connection.
    pub notifications: Counter,
    /// Notifications whose MAC did not verify (sent by a login without `taskstream_server`).
    /// Each costs at most a share of one extra poll per poll interval.
    pub notifications_forged: Counter,
    /// Times the LISTEN connection was re-established after a loss.
    pub listen_reconnects: Counter,
    /// `pg_notification_queue_usage()` at the last scrape: the share of PostgreSQL's
    /// notification queue in use. Near 1, writers' commits fail; a LISTENer that holds a
    /// transaction open keeps it from being cleaned up.
    pub notification_queue_usage: Gauge<f64, AtomicU64>,
    /// Time from a notification's arrival to its frame being handed to a client.
    pub notify_to_send_seconds: Histogram,
    /// Bus mode and fan-out: see [`BusMetrics`].
    pub bus: BusMetrics,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let client_buffer_bytes = Gauge::default();
        let open_streams = Gauge::default();
        let live_tails = Gauge::default();
        let events_sent = Counter::default();
        let stream_ends = Family::<EndLabels, Counter>::default();
        let catch_ups = Counter::default();
        let reads_waiting = Gauge::default();
        let queries = Family::<QueryLabels, Counter>::default();
        let query_seconds = Family::<QueryLabels, Histogram>::new_with_constructor(|| {
            // 100 µs … ~3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let notifications = Counter::default();
        let notifications_forged = Counter::default();
        let listen_reconnects = Counter::default();
        let notification_queue_usage = Gauge::<f64, AtomicU64>::default();
        // 10 µs … ~0.3 s.
        let notify_to_send_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);

        let mut registry = Registry::with_prefix("taskstream");
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because --max-connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "client_buffer_bytes",
            "Bytes of frames held for clients, not yet taken by their connections",
            client_buffer_bytes.clone(),
        );
        registry.register("open_streams", "Open event streams", open_streams.clone());
        registry.register(
            "live_tails",
            "Watched tasks with a live tail",
            live_tails.clone(),
        );
        registry.register(
            "events_sent",
            "Event frames sent to clients",
            events_sent.clone(),
        );
        registry.register(
            "stream_ends",
            "Streams ended, by reason",
            stream_ends.clone(),
        );
        registry.register(
            "catch_ups",
            "Times a live stream fell behind and caught up from the table",
            catch_ups.clone(),
        );
        registry.register(
            "reads_waiting",
            "Client reads waiting for their turn on the pool",
            reads_waiting.clone(),
        );
        registry.register("db_queries", "Database queries, by kind", queries.clone());
        registry.register(
            "db_query_seconds",
            "Database query latency, by kind",
            query_seconds.clone(),
        );
        registry.register(
            "notifications",
            "Notifications received on the LISTEN connection",
            notifications.clone(),
        );
        registry.register(
            "notifications_forged",
            "Notifications whose MAC did not verify (forged)",
            notifications_forged.clone(),
        );
        registry.register(
            "notification_queue_usage",
            "pg_notification_queue_usage() at the last scrape (0 to 1)",
            notification_queue_usage.clone(),
        );
        registry.register(
            "listen_reconnects",
            "LISTEN connection re-establishments",
            listen_reconnects.clone(),
        );
        registry.register(
            "notify_to_send_seconds",
            "Time from a notification's arrival to its frame reaching a client's buffer",
            notify_to_send_seconds.clone(),
        );
        registry.register("build_info", "Build information", build_info);
        let bus = BusMetrics::default();
        bus.register(&mut registry);

        Metrics {
            connections,
            connections_refused,
            client_buffer_bytes,
            open_streams,
            live_tails,
            events_sent,
            stream_ends,
            catch_ups,
            reads_waiting,
            queries,
            query_seconds,
            notifications,
            notifications_forged,
            listen_reconnects,
            notification_queue_usage,
            notify_to_send_seconds,
            bus,
            registry,
        }
    }
}

/// Where this instance's notifications come from: its own LISTEN, NATS, or both.
#[derive(Debug, Default)]
pub struct BusMetrics {
    /// 1 while this instance has a LISTEN in place on PostgreSQL (in any mode).
    pub pg_listener: Gauge,
    /// 1 while this instance holds one of the `--pg-listeners` seats (bus mode).
    pub pg_listener_seat: Gauge,
    /// 1 while the NATS connection is up and its subscriptions confirmed (bus mode).
    pub nats_connected: Gauge,
    /// Messages received from NATS (on any subject this instance subscribes to).
    pub nats_received: Counter,
    /// Notifications this instance republished to NATS (as a seat holder).
    pub nats_published: Counter,
    /// NATS subjects subscribed: one per watched task, plus the one for "re-check everything".
    pub nats_subscriptions: Gauge,
    /// Times NATS became unreachable and this instance fell back (to its own LISTEN, or to the
    /// poll alone with `--nats-fallback false`).
    pub nats_fallbacks: Counter,
}

impl BusMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pg_listener",
            "1 while this instance LISTENs to PostgreSQL",
            self.pg_listener.clone(),
        );
        registry.register(
            "pg_listener_seat",
            "1 while this instance holds a PostgreSQL listener seat (bus mode)",
            self.pg_listener_seat.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the NATS connection is up (bus mode)",
            self.nats_connected.clone(),
        );
        registry.register(
            "nats_messages_received",
            "Messages received from NATS",
            self.nats_received.clone(),
        );
        registry.register(
            "nats_messages_published",
            "Notifications republished to NATS",
            self.nats_published.clone(),
        );
        registry.register(
            "nats_subscriptions",
            "NATS subjects subscribed (watched tasks, plus re-check-everything)",
            self.nats_subscriptions.clone(),
        );
        registry.register(
            "nats_fallbacks",
            "Times NATS became unreachable and this instance fell back to its own LISTEN or the poll",
            self.nats_fallbacks.clone(),
        );
    }
}

impl Metrics {
    /// The number of queries of `kind` made so far.
    pub fn query_count(&self, kind: QueryKind) -> u64 {
        self.queries.get_or_create(&QueryLabels { kind }).get()
    }

    /// The total number of database queries made so far.
    pub fn total_queries(&self) -> u64 {
        QueryKind::ALL
            .into_iter()
            .map(|kind| self.query_count(kind))
            .sum()
    }

    /// The number of streams that ended for `reason`.
    pub fn stream_end_count(&self, reason: EndReason) -> u64 {
        self.stream_ends.get_or_create(&EndLabels { reason }).get()
    }

    /// Records a query of `kind` that took `seconds`.
    pub fn record_query(&self, kind: QueryKind, seconds: f64) {
        let labels = QueryLabels { kind };
        self.queries.get_or_create(&labels).inc();
        self.query_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Records the end of a stream.
    pub fn record_end(&self, reason: EndReason) {
        self.stream_ends.get_or_create(&EndLabels { reason }).inc();
    }

    /// Everything in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
