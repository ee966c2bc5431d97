//! Every tunable of the server, with its default and the reason for it.
//!
//! [`Config`] is what the library runs with; [`Cli`] is how the binary fills it from flags and
//! environment variables. The defaults live once, as the constants below, and both use them.

use std::net::SocketAddr;
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
    /// Frames buffered per client.
    pub client_buffer: usize,
    /// Longest time a client may accept no frame before it is disconnected.
    pub write_timeout: Duration,
    /// Database connections in the pool.
    pub pool_size: usize,
    /// Rows per replay query.
    pub replay_batch: i64,
    /// Per-statement timeout on every pooled connection.
    pub statement_timeout: Duration,
    /// Whether to LISTEN for notifications. Off for poolers in transaction mode, where LISTEN
    /// silently does nothing; polling then delivers everything.
    pub notify: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            poll_interval: DEFAULT_POLL_INTERVAL,
            keepalive: DEFAULT_KEEPALIVE,
            retry: DEFAULT_RETRY,
            client_buffer: DEFAULT_CLIENT_BUFFER,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            replay_batch: DEFAULT_REPLAY_BATCH,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            notify: true,
        }
    }
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
            pool_size: self.pool_size,
            replay_batch: self.replay_batch,
            statement_timeout: self.statement_timeout,
            notify: self.notify,
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
