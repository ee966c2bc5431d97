//! Every tunable of the server, with its default and the reason for it.
//!
//! [`Config`] is what the library runs with; [`Cli`] is how the binary fills it from flags and
//! environment variables. The defaults live once, as the constants below, and both use them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser;

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
pub const DEFAULT_RETRY: Duration = Duration::from_millis(1000);

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
pub const DEFAULT_MAX_REPLAYS: usize = 12;

/// Open streams accepted before new ones get `503`. Each idle stream costs a few KiB and a file
/// descriptor; the server raises its descriptor limit to its hard limit at start.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;

/// Longest a client may take to send its request headers (slowloris), and to send its first
/// byte or finish a TLS handshake after connecting.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted (`431` beyond). hyper's floor is 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Longest request target (path and query) accepted (`414` beyond).
pub const DEFAULT_MAX_URL_BYTES: usize = 4096;

/// Longest a shutdown takes: streams are closed over the first half of it (spread, so that
/// clients do not all reconnect to the remaining instances at once), then connections drain.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The default log filter (`tracing_subscriber::EnvFilter` syntax).
pub const DEFAULT_LOG_FILTER: &str = "info";

/// What the library runs with. `Config::default()` is the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Safety-net poll interval (also the only delivery path with `notify` off).
    pub poll_interval: Duration,
    /// Keep-alive comment interval during silence.
    pub keepalive: Duration,
    /// The `retry:` hint sent first on every stream.
    pub retry: Duration,
    /// Chunks buffered per client.
    pub client_buffer: usize,
    /// Longest time a client may accept nothing before it is disconnected.
    pub write_timeout: Duration,
    /// Rows per replay query.
    pub replay_batch: i64,
    /// Whether to LISTEN for notifications. Off for poolers in transaction mode, where LISTEN
    /// silently does nothing; polling then delivers everything.
    pub notify: bool,
    /// Database connections in the pool.
    pub pool_size: usize,
    /// Per-statement timeout on every pooled connection.
    pub statement_timeout: Duration,
    /// Client reads (stream starts, replays) on the pool at once; the rest queue.
    pub max_replays: usize,
    /// Open streams before `503`.
    pub max_streams: usize,
    /// Time allowed for request headers, a first byte, or a TLS handshake.
    pub header_timeout: Duration,
    /// Largest request head (`431` beyond).
    pub max_header_bytes: usize,
    /// Longest request target (`414` beyond).
    pub max_url_bytes: usize,
    /// Longest a shutdown takes.
    pub drain_deadline: Duration,
    /// When set, each stream ends after about this long (minus up to 10 % jitter) so that
    /// long-lived streams rebalance across instances; clients resume by cursor.
    pub max_stream_lifetime: Option<Duration>,
    /// When set, every request but `/healthz` and `/readyz` needs an HS256 JWT signed with it.
    pub jwt_secret: Option<Secret>,
    /// Origins allowed to read streams cross-origin (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Whether cross-origin requests may carry credentials (the token cookie).
    pub cors_credentials: bool,
    /// Certificate and key (PEM) to serve HTTPS with; `None`: cleartext.
    pub tls: Option<TlsFiles>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            poll_interval: DEFAULT_POLL_INTERVAL,
            keepalive: DEFAULT_KEEPALIVE,
            retry: DEFAULT_RETRY,
            client_buffer: DEFAULT_CLIENT_BUFFER,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            replay_batch: DEFAULT_REPLAY_BATCH,
            notify: true,
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            max_replays: DEFAULT_MAX_REPLAYS,
            max_streams: DEFAULT_MAX_STREAMS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            max_stream_lifetime: None,
            jwt_secret: None,
            cors_origins: Vec::new(),
            cors_credentials: false,
            tls: None,
        }
    }
}

/// A secret that never shows in `Debug` output (and so in no log line).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The PEM files of a TLS certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The command line of the `taskstream` binary. Every flag can also be set by the environment
/// variable shown in `--help`.
#[derive(Debug, Parser)]
#[command(name = "taskstream", version, about, long_about = None)]
pub struct Cli {
    /// PostgreSQL to serve from. When unset, a private cluster is started in a temporary
    /// directory (with a demo agent writing events) and removed on exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address to listen on.
    #[arg(long, env = "TASKSTREAM_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Safety-net poll interval (e.g. 500ms, 2s, 1m).
    #[arg(long, env = "TASKSTREAM_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Keep-alive comment interval during silence.
    #[arg(long, env = "TASKSTREAM_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,

    /// Reconnect delay hinted to clients with `retry:`.
    #[arg(long, env = "TASKSTREAM_RETRY", default_value = "1000ms", value_parser = parse_duration)]
    pub retry: Duration,

    /// Frames buffered per client before it is treated as slow.
    #[arg(long, env = "TASKSTREAM_CLIENT_BUFFER", default_value_t = DEFAULT_CLIENT_BUFFER,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub client_buffer: usize,

    /// Disconnect a client that accepts no frame for this long.
    #[arg(long, env = "TASKSTREAM_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Database connections in the pool.
    #[arg(long, env = "TASKSTREAM_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub pool_size: usize,

    /// Rows per replay query.
    #[arg(long, env = "TASKSTREAM_REPLAY_BATCH", default_value_t = DEFAULT_REPLAY_BATCH,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub replay_batch: i64,

    /// Per-statement timeout on every pooled database connection.
    #[arg(long, env = "TASKSTREAM_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub statement_timeout: Duration,

    /// Client reads (stream starts, replays) on the pool at once; more queue.
    #[arg(long, env = "TASKSTREAM_MAX_REPLAYS", default_value_t = DEFAULT_MAX_REPLAYS,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_replays: usize,

    /// Open streams before new ones get 503.
    #[arg(long, env = "TASKSTREAM_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_streams: usize,

    /// Time allowed for request headers, a first byte or a TLS handshake.
    #[arg(long, env = "TASKSTREAM_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Largest request head in bytes (431 beyond; at least 8192).
    #[arg(long, env = "TASKSTREAM_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::value_parser!(u32).range(8192..).map(|n| n as usize))]
    pub max_header_bytes: usize,

    /// Longest request target (path and query) in bytes (414 beyond).
    #[arg(long, env = "TASKSTREAM_MAX_URL_BYTES", default_value_t = DEFAULT_MAX_URL_BYTES,
          value_parser = clap::value_parser!(u32).range(64..).map(|n| n as usize))]
    pub max_url_bytes: usize,

    /// Longest a shutdown takes (streams are closed over its first half).
    #[arg(long, env = "TASKSTREAM_DRAIN_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub drain_deadline: Duration,

    /// End each stream after about this long, to rebalance after deploys (off when unset).
    #[arg(long, env = "TASKSTREAM_MAX_STREAM_LIFETIME", value_parser = parse_duration)]
    pub max_stream_lifetime: Option<Duration>,

    /// Require an HS256 JWT signed with this secret (off when unset).
    #[arg(long, env = "TASKSTREAM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// An origin allowed to read streams cross-origin (repeatable; CORS is off without one).
    #[arg(
        long = "cors-origin",
        env = "TASKSTREAM_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Allow cross-origin requests to carry credentials (the token cookie).
    #[arg(long, env = "TASKSTREAM_CORS_CREDENTIALS")]
    pub cors_credentials: bool,

    /// TLS certificate chain (PEM); serves HTTPS (with HTTP/2 by ALPN) with --tls-key.
    #[arg(long, env = "TASKSTREAM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "TASKSTREAM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// LISTEN for notifications (false: deliver by polling only, for transaction poolers).
    #[arg(long, env = "TASKSTREAM_NOTIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub notify: bool,

    /// Log filter (tracing EnvFilter syntax, e.g. `info,taskstream=debug`).
    #[arg(long, env = "TASKSTREAM_LOG", default_value = DEFAULT_LOG_FILTER)]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "TASKSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl Cli {
    /// The library configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            poll_interval: self.poll_interval,
            keepalive: self.keepalive,
            retry: self.retry,
            client_buffer: self.client_buffer,
            write_timeout: self.write_timeout,
            replay_batch: self.replay_batch,
            notify: self.notify,
            pool_size: self.pool_size,
            statement_timeout: self.statement_timeout,
            max_replays: self.max_replays,
            max_streams: self.max_streams,
            header_timeout: self.header_timeout,
            max_header_bytes: self.max_header_bytes,
            max_url_bytes: self.max_url_bytes,
            drain_deadline: self.drain_deadline,
            max_stream_lifetime: self.max_stream_lifetime,
            jwt_secret: self.jwt_secret.clone().map(Secret),
            cors_origins: self.cors_origins.clone(),
            cors_credentials: self.cors_credentials,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }
}

/// Parses `250ms`, `15s`, `2m` (a bare number is milliseconds). Zero is refused: every interval
/// here drives a timer that must make progress.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 15s or 1m"))?;
    let duration = match unit.trim() {
        "" | "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        other => return Err(format!("unknown unit `{other}` (use ms, s or m)")),
    };
    if duration.is_zero() {
        return Err("a duration must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn cli_defaults_match_the_library_defaults() {
        let cli = Cli::try_parse_from(["taskstream"]).expect("no flags parse");
        let (from_cli, default) = (cli.config(), Config::default());
        assert_eq!(format!("{from_cli:?}"), format!("{default:?}"));
    }
}
