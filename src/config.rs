//! Every tunable of the server, with its default and the reason for it.
//!
//! [`Config`] is what the library runs with, and its command line is derived from it: each
//! field's doc comment is its `--help` text, each default is one constant below, and
//! `Config::default()` is what the command line gives with no flags and no environment.
//! [`Cli`] adds what only the binary needs (the database, the listen address, logging).
//! [`Config::validate`] checks the settings together at start and reports every bad one at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{ArgAction, Args, FromArgMatches, Parser};

use crate::db::PayloadMode;

/// Where the server listens unless told otherwise: loopback only, so a first `cargo run` does
/// not expose anything.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How often the safety-net poll re-reads the position of every watched task (one batched
/// query per tick, whatever the number of clients). 500 ms is the original design's poll, so
/// with notifications off the latency matches it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Silence after which a `: keep-alive` comment is sent. 15 s stays under the idle timeouts of
/// common proxies (nginx: 60 s) and notices a vanished client within a minute.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// The `retry:` hint: how long EventSource waits before it reconnects.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Frames buffered per client between its stream task and its socket. Small: a client that
/// falls behind catches up from the table instead of holding a backlog in memory.
pub const DEFAULT_CLIENT_BUFFER: usize = 64;

/// How long a client may make no progress at all (not one frame accepted) before it is
/// disconnected. It resumes by cursor and loses nothing.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Database connections for replays and tail reads. Fixed, however many clients connect.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Rows read per replay query: bounds the memory of a replay, whatever the session's length.
pub const DEFAULT_REPLAY_BATCH: i64 = 500;

/// Longest a database query may run before PostgreSQL cancels it, so a stuck query cannot hang
/// a stream forever.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client reads (stream starts and replays) running on the pool at once. Kept below the pool
/// size so that a reconnect storm queues here and the tails, the poll and `/readyz` always find
/// a connection.
pub const DEFAULT_MAX_REPLAYS: usize = 11;

/// JSON API writes (`POST /tasks/{id}/events`, `PUT /tasks/{id}`) holding a pooled connection
/// at once. With `--max-replays` it stays below the pool size, so writes never starve stream
/// starts, the tails or the poll, and a burst of writes queues here briefly, then gets `503`.
pub const DEFAULT_MAX_WRITES: usize = 4;

/// Largest JSON API request body (`413` beyond): 1 MiB is far above any event an agent sends,
/// and bounds what one request can make the server hold.
pub const DEFAULT_MAX_WRITE_BYTES: usize = 1024 * 1024;

/// Most events in one `POST /tasks/{id}/events` batch (`413` beyond): one batch is one
/// transaction holding its session's row lock.
pub const DEFAULT_MAX_WRITE_EVENTS: usize = 1000;

/// How long an `Idempotency-Key` is remembered: a retry within it gets the first answer again.
/// A day covers every retry policy we know of, and keys are pruned after it.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Open streams accepted before new ones get `503`. Each idle stream costs a few KiB and a file
/// descriptor; the server raises its descriptor limit to its hard limit at start.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;

/// Longest a client may take to send its request headers (slowloris), and to send its first
/// byte or finish a TLS handshake after connecting.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted (`431` beyond). hyper's floor is 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Longest request target (path and query) accepted (`414` beyond). Room for a multi-task
/// stream of [`DEFAULT_MAX_STREAM_TASKS`] UUIDs (`&task=` and 36 bytes each: 4.2 KB) and its
/// cursor in `?last_event_id=` (24 bytes a task: 2.4 KB).
pub const DEFAULT_MAX_URL_BYTES: usize = 8192;

/// Most tasks one multi-task stream (`GET /events/stream?task=…`) may carry. Supabase allows
/// 100 channels per socket; the stream's cursor grows by 24 bytes a task.
pub const DEFAULT_MAX_STREAM_TASKS: usize = 100;

/// Longest a shutdown takes: streams are closed over the first half of it (spread, so that
/// clients do not all reconnect to the remaining instances at once), then connections drain.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes of events a stream holds at once: the rows one replay query reads, and the frames
/// queued for its client. PostgreSQL returns whole rows, so a single larger row is held whole.
/// 1 MiB keeps a replay of small events to a few queries while 10,000 streams could not hold
/// more than a few GiB even if every client stopped reading at once.
pub const DEFAULT_REPLAY_BYTES: usize = 1024 * 1024;

/// Connections accepted beyond `--max-streams` by default: room for page loads, probes,
/// scrapes and refused streams, which are short.
pub const CONNECTIONS_BEYOND_STREAMS: usize = 1000;

/// HTTP/2 streams one connection may have open at once (what browsers and proxies expect; one
/// connection cannot take every stream slot).
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 128;

/// How long an HTTP/2 connection may have no open stream before it is closed, whether or not it
/// answers pings: an idle connection costs a socket and its buffers.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Shortest JWT secret accepted: HS256 is an HMAC with SHA-256, whose key should be at least
/// as long as its output (RFC 7518, section 3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// PostgreSQL listeners in bus mode: at most this many instances LISTEN, whatever the number of
/// instances. Two, so that losing one still leaves a publisher while a third takes its seat.
pub const DEFAULT_PG_LISTENERS: u16 = 2;

/// The first token of every NATS subject of bus mode.
pub const DEFAULT_NATS_SUBJECT_PREFIX: &str = "taskstream";

/// The default log filter (`tracing_subscriber::EnvFilter` syntax).
pub const DEFAULT_LOG_FILTER: &str = "info";

/// What the library runs with. Every field is also a flag and an environment variable of the
/// binary; `Config::default()` is the documented defaults.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Safety-net poll: one batched query for every watched task (also the only delivery path
    /// with --notify false).
    #[arg(long, env = "TASKSTREAM_POLL_INTERVAL", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_POLL_INTERVAL))]
    pub poll_interval: Duration,

    /// Send a `: keep-alive` comment after this much silence.
    #[arg(long, env = "TASKSTREAM_KEEPALIVE", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_KEEPALIVE))]
    pub keepalive: Duration,

    /// The `retry:` hint sent first on every stream: how long EventSource waits before it
    /// reconnects.
    #[arg(long, env = "TASKSTREAM_RETRY", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_RETRY))]
    pub retry: Duration,

    /// Chunks buffered per client before it is treated as slow.
    #[arg(long, env = "TASKSTREAM_CLIENT_BUFFER", default_value_t = DEFAULT_CLIENT_BUFFER,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub client_buffer: usize,

    /// Disconnect a client that accepts nothing for this long (it resumes by cursor).
    #[arg(long, env = "TASKSTREAM_WRITE_TIMEOUT", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_WRITE_TIMEOUT))]
    pub write_timeout: Duration,

    /// Rows per replay query.
    #[arg(long, env = "TASKSTREAM_REPLAY_BATCH", default_value_t = DEFAULT_REPLAY_BATCH,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub replay_batch: i64,

    /// Bytes of events a stream holds at once (rows read plus frames queued for its client); a
    /// single larger event is held whole.
    #[arg(long, env = "TASKSTREAM_REPLAY_BYTES", default_value_t = DEFAULT_REPLAY_BYTES,
          value_parser = clap::value_parser!(u32).range(4096..).map(|n| n as usize))]
    pub replay_bytes: usize,

    /// LISTEN for notifications; false for poolers in transaction mode, where LISTEN silently
    /// does nothing (polling then delivers everything).
    #[arg(long, env = "TASKSTREAM_NOTIFY", default_value_t = true, action = ArgAction::Set)]
    pub notify: bool,

    /// Apply schema.sql at start when the database's schema is older (as its owner); false:
    /// no DDL at all, and refuse to start unless the schema is current (run `taskstream
    /// migrate` first). A login with only `taskstream_server` runs with false.
    #[arg(long, env = "TASKSTREAM_MIGRATE", default_value_t = true, action = ArgAction::Set)]
    pub migrate: bool,

    /// Database connections in the pool, for replays and tail reads.
    #[arg(long, env = "TASKSTREAM_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub pool_size: usize,

    /// PostgreSQL `statement_timeout` of every pooled connection.
    #[arg(long, env = "TASKSTREAM_STATEMENT_TIMEOUT", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_STATEMENT_TIMEOUT))]
    pub statement_timeout: Duration,

    /// Client reads (stream starts, replays) on the pool at once; more queue. Kept below
    /// --pool-size.
    #[arg(long, env = "TASKSTREAM_MAX_REPLAYS", default_value_t = DEFAULT_MAX_REPLAYS,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_replays: usize,

    /// JSON API writes on the pool at once; more queue briefly, then get 503. With
    /// --max-replays, kept below --pool-size.
    #[arg(long, env = "TASKSTREAM_MAX_WRITES", default_value_t = DEFAULT_MAX_WRITES,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_writes: usize,

    /// Largest JSON API request body in bytes (413 beyond).
    #[arg(long, env = "TASKSTREAM_MAX_WRITE_BYTES", default_value_t = DEFAULT_MAX_WRITE_BYTES,
          value_parser = clap::value_parser!(u32).range(64..).map(|n| n as usize))]
    pub max_write_bytes: usize,

    /// Most events in one POST batch (413 beyond).
    #[arg(long, env = "TASKSTREAM_MAX_WRITE_EVENTS", default_value_t = DEFAULT_MAX_WRITE_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize))]
    pub max_write_events: usize,

    /// How long an Idempotency-Key is remembered (its first answer replayed); pruned after.
    #[arg(long, env = "TASKSTREAM_IDEMPOTENCY_WINDOW", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_IDEMPOTENCY_WINDOW))]
    pub idempotency_window: Duration,

    /// Accept writes without a token on a non-loopback address while authentication is off
    /// (on loopback they are always accepted then).
    #[arg(long, env = "TASKSTREAM_ALLOW_ANONYMOUS_WRITES")]
    pub allow_anonymous_writes: bool,

    /// Open streams; beyond, new streams get 503 with retry-after.
    #[arg(long, env = "TASKSTREAM_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_streams: usize,

    /// Open connections; beyond, new ones are closed at once (default: --max-streams + 1000).
    #[arg(long, env = "TASKSTREAM_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: Option<usize>,

    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "TASKSTREAM_HTTP2_MAX_STREAMS", default_value_t = DEFAULT_HTTP2_MAX_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,

    /// Close an HTTP/2 connection that has had no open stream for this long, pings or not.
    #[arg(long, env = "TASKSTREAM_IDLE_TIMEOUT", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_IDLE_TIMEOUT))]
    pub idle_timeout: Duration,

    /// Time for a client's first byte, TLS handshake, or request headers (slowloris).
    #[arg(long, env = "TASKSTREAM_HEADER_TIMEOUT", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: Duration,

    /// Largest request head in bytes (431 beyond; at least 8192).
    #[arg(long, env = "TASKSTREAM_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::value_parser!(u32).range(8192..).map(|n| n as usize))]
    pub max_header_bytes: usize,

    /// Longest request target (path and query) in bytes (414 beyond).
    #[arg(long, env = "TASKSTREAM_MAX_URL_BYTES", default_value_t = DEFAULT_MAX_URL_BYTES,
          value_parser = clap::value_parser!(u32).range(64..).map(|n| n as usize))]
    pub max_url_bytes: usize,

    /// Most tasks one multi-task stream may carry (400 beyond).
    #[arg(long, env = "TASKSTREAM_MAX_STREAM_TASKS", default_value_t = DEFAULT_MAX_STREAM_TASKS,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_stream_tasks: usize,

    /// Longest a shutdown takes; streams are closed over its first half.
    #[arg(long, env = "TASKSTREAM_DRAIN_DEADLINE", value_parser = parse_duration,
          default_value = duration_text(DEFAULT_DRAIN_DEADLINE))]
    pub drain_deadline: Duration,

    /// End each stream after about this long (minus up to 10 % jitter) so that long-lived
    /// streams rebalance across instances after deploys; clients resume by cursor. Off when
    /// unset.
    #[arg(long, env = "TASKSTREAM_MAX_STREAM_LIFETIME", value_parser = parse_duration)]
    pub max_stream_lifetime: Option<Duration>,

    /// Require an HS256 JWT signed with this secret (at least 32 bytes) on every request but
    /// /healthz and /readyz (off when unset). Prefer --jwt-secret-file: arguments show in `ps`.
    #[arg(long, env = "TASKSTREAM_JWT_SECRET", hide_env_values = true,
          conflicts_with = "jwt_secret_file",
          value_parser = parse_secret)]
    pub jwt_secret: Option<Secret>,

    /// Read the JWT secret from this file (its content, less one trailing line break).
    #[arg(long, env = "TASKSTREAM_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Accept only tokens whose `iss` claim is this issuer.
    #[arg(long, env = "TASKSTREAM_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accept only tokens whose `aud` claim names this audience.
    #[arg(long, env = "TASKSTREAM_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Mark the token cookie `Secure` (and name it `__Host-taskstream_token`) without TLS here,
    /// for a proxy that terminates TLS in front.
    #[arg(long, env = "TASKSTREAM_COOKIE_SECURE")]
    pub cookie_secure: bool,

    /// An origin allowed to read streams cross-origin (repeatable; CORS is off without one).
    #[arg(
        long = "cors-origin",
        env = "TASKSTREAM_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Let cross-origin requests carry credentials (the token cookie).
    #[arg(long, env = "TASKSTREAM_CORS_CREDENTIALS")]
    pub cors_credentials: bool,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate and key; cleartext when
    /// unset.
    #[command(flatten)]
    pub tls: Option<TlsFiles>,

    /// Bus mode: notifications fanned out over NATS, with few PostgreSQL listeners.
    #[command(flatten)]
    pub bus: BusConfig,
}

/// Bus mode (on when `--nats-url` is set): at most `--pg-listeners` instances LISTEN to
/// PostgreSQL and republish each notification to NATS, where every instance subscribes to the
/// tasks it watches.
#[derive(Debug, Clone, Args)]
pub struct BusConfig {
    /// A NATS server (repeatable, for a cluster): turns bus mode on. `nats://host:4222`,
    /// `tls://host:4222` to require TLS, `nats://user:password@host:4222` to log in.
    #[arg(
        long = "nats-url",
        env = "TASKSTREAM_NATS_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub nats_urls: Vec<String>,

    /// Instances that LISTEN to PostgreSQL at once in bus mode (chosen by advisory locks).
    #[arg(long, env = "TASKSTREAM_PG_LISTENERS", default_value_t = DEFAULT_PG_LISTENERS,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub pg_listeners: u16,

    /// While NATS is unreachable, LISTEN to PostgreSQL (true) or rely on the poll (false, which
    /// keeps the cap on listeners).
    #[arg(long, env = "TASKSTREAM_NATS_FALLBACK", default_value_t = true, action = ArgAction::Set)]
    pub nats_fallback: bool,

    /// First token(s) of the NATS subjects; deployments (databases) sharing a NATS account need
    /// different ones.
    #[arg(long, env = "TASKSTREAM_NATS_SUBJECT_PREFIX", default_value = DEFAULT_NATS_SUBJECT_PREFIX,
          value_parser = parse_subject_prefix)]
    pub nats_subject_prefix: String,

    /// NATS credentials file (user JWT and NKey seed).
    #[arg(long, env = "TASKSTREAM_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// NATS authentication token.
    #[arg(long, env = "TASKSTREAM_NATS_TOKEN", hide_env_values = true,
          value_parser = parse_secret)]
    pub nats_token: Option<Secret>,

    /// CA certificate(s) (PEM) that the NATS server's certificate must chain to; requires TLS.
    #[arg(long, env = "TASKSTREAM_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS servers that verify clients; with --nats-tls-key.
    #[arg(long, env = "TASKSTREAM_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "TASKSTREAM_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

impl BusConfig {
    /// Whether bus mode is on.
    pub fn enabled(&self) -> bool {
        !self.nats_urls.is_empty()
    }
}

impl Default for Config {
    /// The command line's defaults, without reading the environment.
    fn default() -> Self {
        let command = Config::augment_args(clap::Command::new("taskstream"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["taskstream"])
            .expect("every setting has a default or is optional");
        Config::from_arg_matches(&matches).expect("the defaults are valid settings")
    }
}

/// The settings that [`Config::validate`] refused, each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub Vec<String>);

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid settings: {}", self.0.join("; "))
    }
}

impl std::error::Error for InvalidConfig {}

impl Config {
    /// Checks the settings together, as the server does at start: returns the configuration
    /// to run with (a setting that only needs lowering is lowered, with a warning in the log),
    /// or every setting that cannot work, at once.
    pub fn validate(mut self) -> Result<Config, InvalidConfig> {
        let mut errors = Vec::new();
        if self.max_url_bytes >= self.max_header_bytes {
            errors.push(format!(
                "--max-url-bytes ({}) must be below --max-header-bytes ({}): the request target \
                 is part of the head",
                self.max_url_bytes, self.max_header_bytes
            ));
        }
        self.resolve_secret(&mut errors);
        if (self.jwt_issuer.is_some() || self.jwt_audience.is_some()) && self.jwt_secret.is_none() {
            errors.push(
                "--jwt-issuer and --jwt-audience need --jwt-secret or --jwt-secret-file".to_owned(),
            );
        }
        if self.cors_credentials && !self.cookie_is_secure() && self.jwt_secret.is_some() {
            tracing::warn!(
                "--cors-credentials without TLS or --cookie-secure: browsers send a cookie \
                 cross-site only when it is Secure, so the token cookie stays SameSite=Lax"
            );
        }
        if self.bus.enabled() && !self.notify {
            errors.push(
                "--nats-url needs --notify: bus mode republishes PostgreSQL notifications"
                    .to_owned(),
            );
        }
        for url in &self.bus.nats_urls {
            if let Err(error) = url.parse::<async_nats::ServerAddr>() {
                errors.push(format!("--nats-url {url:?} is not a NATS URL: {error}"));
            }
        }
        self.share_the_pool(&mut errors);
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(InvalidConfig(errors))
        }
    }
}

impl Config {
    /// Keeps client reads and writes together below the pool size, so that they always leave
    /// the tails, the poll and `/readyz` a connection and neither can take the other's: reads
    /// are lowered first (as before writes existed), then writes, each to no less than one,
    /// with a warning; a pool too small for one of each and a spare is refused.
    fn share_the_pool(&mut self, errors: &mut Vec<String>) {
        if self.pool_size < 3 {
            errors.push(format!(
                "--pool-size ({}) must be at least 3: one connection for client reads, one for \
                 writes and one for the tails, the poll and /readyz",
                self.pool_size
            ));
            return;
        }
        let room = self.pool_size - 1;
        if self.max_replays + self.max_writes > room {
            let replays = room.saturating_sub(self.max_writes).max(1);
            let writes = self.max_writes.min(room - replays);
            tracing::warn!(
                max_replays = self.max_replays,
                max_writes = self.max_writes,
                pool_size = self.pool_size,
                replays,
                writes,
                "max-replays and max-writes lowered below pool-size"
            );
            self.max_replays = replays;
            self.max_writes = writes;
        }
    }

    /// Open connections allowed: `--max-connections`, or `--max-streams` plus room for short
    /// requests.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
            .unwrap_or(self.max_streams.saturating_add(CONNECTIONS_BEYOND_STREAMS))
    }

    /// How much one read of a session's events may return (replays and tails alike).
    pub(crate) fn page_limit(&self) -> crate::db::PageLimit {
        crate::db::PageLimit {
            rows: self.replay_batch,
            bytes: self.replay_bytes,
        }
    }

    /// Whether the token cookie is `Secure`: under TLS, or behind a proxy that terminates it.
    pub fn cookie_is_secure(&self) -> bool {
        self.tls.is_some() || self.cookie_secure
    }

    /// Reads `--jwt-secret-file` into the secret, and refuses a secret too short to be safe. An
    /// empty one is most likely an unset template variable: starting without authentication
    /// would be the worst reading of it.
    fn resolve_secret(&mut self, errors: &mut Vec<String>) {
        if let Some(path) = &self.jwt_secret_file {
            match std::fs::read(path) {
                Ok(mut bytes) => {
                    if bytes.ends_with(b"\n") {
                        bytes.pop();
                        if bytes.ends_with(b"\r") {
                            bytes.pop();
                        }
                    }
                    self.jwt_secret = Some(Secret(bytes));
                }
                Err(error) => {
                    errors.push(format!(
                        "cannot read --jwt-secret-file {}: {error}",
                        path.display()
                    ));
                    return;
                }
            }
        }
        let Some(Secret(secret)) = &self.jwt_secret else {
            return;
        };
        let source = match &self.jwt_secret_file {
            Some(path) => format!("the JWT secret in {}", path.display()),
            None => "--jwt-secret".to_owned(),
        };
        if secret.is_empty() {
            errors.push(format!(
                "{source} is empty (an unset variable?); leave it out to run without \
                 authentication"
            ));
        } else if secret.len() < MIN_JWT_SECRET_BYTES {
            errors.push(format!(
                "{source} is {} bytes; HS256 needs at least {MIN_JWT_SECRET_BYTES} \
                 (`openssl rand -hex 32` makes one)",
                secret.len()
            ));
        }
    }
}

/// A secret that never shows in `Debug` output (and so in no log line).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl Secret {
    /// The secret as text, when it is UTF-8 (one given on the command line always is).
    pub(crate) fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

/// A secret given on the command line or in the environment.
fn parse_secret(text: &str) -> Result<Secret, String> {
    Ok(Secret(text.as_bytes().to_vec()))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The PEM files of a TLS certificate chain and its private key.
#[derive(Debug, Clone, Args)]
pub struct TlsFiles {
    /// TLS certificate chain (PEM, leaf first); serves HTTPS with --tls-key.
    #[arg(long = "tls-cert", env = "TASKSTREAM_TLS_CERT", required = false)]
    pub cert: PathBuf,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", env = "TASKSTREAM_TLS_KEY", required = false)]
    pub key: PathBuf,
}

/// The command line of the `taskstream` binary: the server's [`Config`] plus what only the
/// binary needs. Every flag can also be set by the environment variable shown in `--help`.
#[derive(Debug, Parser)]
#[command(name = "taskstream", version, about, long_about = None)]
pub struct Cli {
    /// What to run: the server when none is named.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// PostgreSQL to serve from (or to migrate). When unset, the server starts a private
    /// cluster in a temporary directory (with a demo agent writing events) and removes it on
    /// exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Address to listen on.
    #[arg(long, env = "TASKSTREAM_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// The server's settings.
    #[command(flatten)]
    pub config: Config,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,taskstream=debug`).
    #[arg(long, env = "TASKSTREAM_LOG", default_value = DEFAULT_LOG_FILTER)]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "TASKSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A command other than serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply schema.sql to --database-url as the schema's owner when its schema is older,
    /// print what was done, and exit: 0 when the schema is current, 1 with PostgreSQL's
    /// reason when it cannot be made so.
    Migrate(MigrateArgs),
}

/// The settings of `taskstream migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Set what event notifications carry (a database setting, read by every server):
    /// `event`, the event when it fits (the default), or `address`, only its address, for
    /// databases shared with roles that must not read agent events.
    #[arg(long, value_enum)]
    pub notify_payload: Option<PayloadMode>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Parses a duration in humantime's syntax (`250ms`, `15s`, `2m`, `1h`, `1h 30m`); a bare
/// number is milliseconds, as it always was here. Zero is refused: every duration here drives
/// a timer or a deadline that must make progress.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let millis: u64 = text.parse().map_err(|_| format!("`{text}` is too large"))?;
        Duration::from_millis(millis)
    } else {
        humantime::parse_duration(text)
            .map_err(|error| format!("`{text}` is not a duration like 500ms, 15s or 1h: {error}"))?
    };
    if duration.is_zero() {
        return Err("a duration must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// Checks a NATS subject prefix: one or more tokens of letters, digits, `-` and `_`, separated
/// by dots (no wildcard, no whitespace, no empty token).
fn parse_subject_prefix(text: &str) -> Result<String, String> {
    let valid = text.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a subject prefix like `taskstream` or `prod.taskstream`"
        ))
    }
}

/// How a default duration is shown in `--help` (and parsed back by [`parse_duration`]).
fn duration_text(duration: Duration) -> String {
    const HOUR: u64 = 60 * 60;
    // humantime writes a day as `1day`; hours read better and parse back the same.
    if duration.subsec_nanos() == 0
        && duration.as_secs() >= HOUR
        && duration.as_secs().is_multiple_of(HOUR)
    {
        return format!("{}h", duration.as_secs() / HOUR);
    }
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("40"),
            Ok(Duration::from_millis(40)),
            "bare: ms"
        );
        for bad in ["0s", "0", "fast", "", "-1s", "99999999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_default_duration_reads_back_as_itself() {
        for duration in [
            DEFAULT_POLL_INTERVAL,
            DEFAULT_KEEPALIVE,
            DEFAULT_RETRY,
            DEFAULT_WRITE_TIMEOUT,
            DEFAULT_STATEMENT_TIMEOUT,
            DEFAULT_HEADER_TIMEOUT,
            DEFAULT_DRAIN_DEADLINE,
            DEFAULT_IDLE_TIMEOUT,
        ] {
            assert_eq!(parse_duration(&duration_text(duration)), Ok(duration));
        }
    }

    #[test]
    fn the_defaults_are_the_documented_constants() {
        let config = Config::default();
        assert_eq!(config.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(config.keepalive, DEFAULT_KEEPALIVE);
        assert_eq!(config.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(config.max_stream_lifetime, None);
        assert_eq!(config.replay_bytes, DEFAULT_REPLAY_BYTES);
        assert_eq!(config.http2_max_streams, DEFAULT_HTTP2_MAX_STREAMS);
        assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(
            config.connection_limit(),
            DEFAULT_MAX_STREAMS + CONNECTIONS_BEYOND_STREAMS
        );
        assert!(config.notify && config.tls.is_none() && config.jwt_secret.is_none());
        assert!(!config.cookie_is_secure());
    }

    #[test]
    fn the_jwt_secret_must_be_long_enough_and_not_empty() {
        let with_secret = |secret: &[u8]| Config {
            jwt_secret: Some(Secret(secret.to_vec())),
            ..Config::default()
        };
        let errors = with_secret(b"").validate().expect_err("empty").0;
        assert!(errors[0].contains("empty"), "{errors:?}");
        let errors = with_secret(&[b'x'; 31]).validate().expect_err("short").0;
        assert!(errors[0].contains("31 bytes"), "{errors:?}");
        assert!(with_secret(&[b'x'; 32]).validate().is_ok());
        // An empty environment variable counts as given, not as unset.
        let cli = Cli::try_parse_from(["taskstream", "--jwt-secret", ""]).expect("parses");
        assert!(cli.config.validate().is_err());
    }

    #[test]
    fn the_jwt_secret_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("ts-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        let secret = "0123456789abcdef0123456789abcdef";
        std::fs::write(&file, format!("{secret}\n")).expect("write");
        let config = Config {
            jwt_secret_file: Some(file.clone()),
            ..Config::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(config.jwt_secret, Some(Secret(secret.as_bytes().to_vec())));

        std::fs::write(&file, "short\r\n").expect("write");
        let errors = Config {
            jwt_secret_file: Some(file.clone()),
            ..Config::default()
        }
        .validate()
        .expect_err("too short")
        .0;
        assert!(errors[0].contains("5 bytes"), "{errors:?}");
        let missing = Config {
            jwt_secret_file: Some(dir.join("missing")),
            ..Config::default()
        };
        assert!(missing.validate().expect_err("missing").0[0].contains("cannot read"));
        std::fs::remove_dir_all(&dir).expect("clean up");

        assert!(
            Cli::try_parse_from(["taskstream", "--jwt-secret", "x", "--jwt-secret-file", "f"])
                .is_err(),
            "one or the other"
        );
    }

    #[test]
    fn the_command_line_fills_the_configuration() {
        let cli = Cli::try_parse_from([
            "taskstream",
            "--keepalive",
            "2s",
            "--notify",
            "false",
            "--cors-origin",
            "https://a.example",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .expect("valid flags");
        assert_eq!(cli.config.keepalive, Duration::from_secs(2));
        assert!(!cli.config.notify);
        assert_eq!(cli.config.cors_origins, ["https://a.example"]);
        let tls = cli.config.tls.expect("TLS on");
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        assert!(Cli::try_parse_from(["taskstream", "--keepalive", "0s"]).is_err());
        assert!(Cli::try_parse_from(["taskstream", "--client-buffer", "0"]).is_err());
    }

    #[test]
    fn bus_mode_is_off_by_default_and_on_with_a_nats_url() {
        let config = Config::default();
        assert!(!config.bus.enabled());
        assert_eq!(config.bus.pg_listeners, DEFAULT_PG_LISTENERS);
        assert!(config.bus.nats_fallback);
        assert_eq!(config.bus.nats_subject_prefix, DEFAULT_NATS_SUBJECT_PREFIX);
        let cli = Cli::try_parse_from([
            "taskstream",
            "--nats-url",
            "nats://a:4222",
            "--nats-url",
            "tls://b:4222",
            "--pg-listeners",
            "3",
            "--nats-fallback",
            "false",
        ])
        .expect("valid flags");
        assert!(cli.config.bus.enabled());
        assert_eq!(cli.config.bus.nats_urls, ["nats://a:4222", "tls://b:4222"]);
        assert_eq!(cli.config.bus.pg_listeners, 3);
        assert!(!cli.config.bus.nats_fallback);
        assert!(Cli::try_parse_from(["taskstream", "--pg-listeners", "0"]).is_err());
        assert!(Cli::try_parse_from(["taskstream", "--nats-tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn a_subject_prefix_is_dotted_tokens_without_wildcards() {
        for good in ["taskstream", "prod.taskstream", "a-b_c.d1"] {
            assert_eq!(parse_subject_prefix(good), Ok(good.to_owned()));
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "tâche"] {
            assert!(parse_subject_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bus_mode_needs_notifications_and_valid_urls() {
        let mut config = Config {
            notify: false,
            ..Config::default()
        };
        config.bus.nats_urls = vec!["nats://127.0.0.1:4222".to_owned(), "::".to_owned()];
        let errors = config.validate().expect_err("invalid").0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("--notify"), "{errors:?}");
        assert!(errors[1].contains("\"::\""), "{errors:?}");
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        assert!(Cli::try_parse_from(["taskstream", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["taskstream", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn validation_keeps_reads_and_writes_below_the_pool() {
        let defaults = Config::default().validate().expect("valid");
        assert!(defaults.max_replays + defaults.max_writes < defaults.pool_size);
        assert_eq!(
            (defaults.max_replays, defaults.max_writes),
            (DEFAULT_MAX_REPLAYS, DEFAULT_MAX_WRITES),
            "the defaults fit as they are"
        );
        let config = Config {
            pool_size: 8,
            max_replays: 10,
            ..Config::default()
        };
        assert_eq!(
            config.validate().map(|c| (c.max_replays, c.max_writes)),
            Ok((3, 4))
        );
        let config = Config {
            pool_size: 4,
            max_replays: 3,
            ..Config::default()
        };
        assert_eq!(
            config.validate().map(|c| (c.max_replays, c.max_writes)),
            Ok((1, 2))
        );
        let small = Config {
            pool_size: 2,
            ..Config::default()
        };
        assert!(small.validate().expect_err("too small").0[0].contains("--pool-size"));
    }

    #[test]
    fn durations_of_whole_hours_show_in_hours() {
        assert_eq!(duration_text(DEFAULT_IDEMPOTENCY_WINDOW), "24h");
        assert_eq!(parse_duration("24h"), Ok(DEFAULT_IDEMPOTENCY_WINDOW));
        assert_eq!(duration_text(Duration::from_secs(90 * 60)), "1h 30m");
        assert_eq!(duration_text(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn validation_reports_every_bad_setting() {
        let config = Config {
            max_url_bytes: 20_000,
            ..Config::default()
        };
        let errors = config.validate().expect_err("invalid").0;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("--max-url-bytes"), "{errors:?}");
    }

    #[test]
    fn the_readme_documents_every_flag() {
        let readme = include_str!("../README.md");
        let command = Cli::command();
        let commands = std::iter::once(&command).chain(command.get_subcommands());
        for arg in commands.flat_map(|command| command.get_arguments()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    readme.contains(&format!("`--{long}`")),
                    "--{long} is not in the README"
                );
            }
        }
    }

    #[test]
    fn migrate_is_a_command_with_its_own_settings() {
        let cli = Cli::try_parse_from([
            "taskstream",
            "migrate",
            "--database-url",
            "postgres://owner@db/app",
            "--notify-payload",
            "address",
        ])
        .expect("valid flags");
        let Some(Command::Migrate(args)) = cli.command else {
            panic!("the migrate command");
        };
        assert_eq!(args.notify_payload, Some(PayloadMode::Address));
        assert_eq!(cli.database_url.as_deref(), Some("postgres://owner@db/app"));
        assert!(Cli::try_parse_from(["taskstream", "migrate", "--notify-payload", "x"]).is_err());
        assert!(Cli::try_parse_from(["taskstream", "migrate", "--poll-interval", "1s"]).is_err());
        let serve = Cli::try_parse_from(["taskstream", "--migrate", "false"]).expect("valid");
        assert!(serve.command.is_none() && !serve.config.migrate);
        assert!(Config::default().migrate, "migrations are on by default");
    }

    #[test]
    fn help_shows_each_default_once_defined() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[default: 500ms]"), "{help}");
        assert!(help.contains("[default: 15s]"), "{help}");
        assert!(help.contains("[env: TASKSTREAM_KEEPALIVE="), "{help}");
    }
}
