//! The `http-writes` scenario's measurements: events per second written through
//! `POST /tasks/{id}/events` in batches of 1 and 100 by 1, 4 and 16 concurrent writers (each on
//! its own keep-alive connection and session), against direct SQL `INSERT`s of 1 and 100 rows
//! by as many connections; and write-to-subscriber latency of events written one at a time
//! through `POST` and through `INSERT`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use tokio_postgres::Client;

use crate::client;
use crate::pg::{connect, pg_error};
use crate::record::Percentiles;

/// Concurrent writers measured.
pub const WRITERS: [usize; 3] = [1, 4, 16];

/// Events per request (`POST`) or statement (`INSERT`).
pub const BATCHES: [usize; 2] = [1, 100];

/// Pause between the events of the latency runs: well below any rate limit, so the figure is
/// the path's latency, not a queue's.
const LATENCY_GAP: Duration = Duration::from_millis(5);

/// The statement the server runs for a batch, so that both paths write the same way.
const INSERT_SQL: &str = "
    INSERT INTO agent_events (task_id, session_id, event_type, content)
    SELECT $1, $2, 'assistant', c FROM unnest($3::text[]) WITH ORDINALITY AS e (c, n)
    ORDER BY e.n";

/// What the scenario measured, as named figures.
pub type Figures = BTreeMap<String, f64>;

/// Runs every measurement against the server at `addr` on the database at `url`; `prefix`
/// names its tasks. Each throughput measurement lasts `seconds`; each latency run writes
/// `latency_events`. Returns the figures and the events written.
pub async fn measure(
    addr: SocketAddr,
    url: &str,
    prefix: &str,
    seconds: f64,
    latency_events: u64,
) -> Result<(Figures, u64), String> {
    let owner = connect(url).await?;
    let tasks: Vec<String> = (0..WRITERS[WRITERS.len() - 1])
        .map(|w| format!("{prefix}hw{w}"))
        .chain([format!("{prefix}lat-post"), format!("{prefix}lat-insert")])
        .collect();
    owner
        .execute(
            "INSERT INTO tasks (id, title, status) SELECT id, id, 'InProgress' FROM unnest($1::text[]) AS id",
            &[&tasks],
        )
        .await
        .map_err(|e| format!("create tasks: {}", pg_error(&e)))?;
    let duration = Duration::from_secs_f64(seconds);
    let mut figures = Figures::new();
    let mut written = 0;
    for batch in BATCHES {
        for writers in WRITERS {
            let post = throughput(writers, duration, |w| {
                post_writer(
                    addr,
                    format!("{prefix}hw{w}"),
                    format!("{prefix}p{batch}x{writers}w{w}"),
                    batch,
                )
            })
            .await?;
            let insert = throughput(writers, duration, |w| {
                insert_writer(
                    url.to_owned(),
                    format!("{prefix}hw{w}"),
                    format!("{prefix}i{batch}x{writers}w{w}"),
                    batch,
                )
            })
            .await?;
            written += post.0 + insert.0;
            figures.insert(
                format!("post_b{batch}_w{writers}_events_per_s"),
                post.1.round(),
            );
            figures.insert(
                format!("insert_b{batch}_w{writers}_events_per_s"),
                insert.1.round(),
            );
        }
    }
    for (path, via) in [("post", Via::Post), ("insert", Via::Insert)] {
        let latency = latency(
            addr,
            url,
            &format!("{prefix}lat-{path}"),
            via,
            latency_events,
        )
        .await?;
        written += latency_events;
        let p = Percentiles::of(&latency).ok_or("no latency sample")?;
        figures.insert(format!("{path}_to_subscriber_p50_ms"), p.p50);
        figures.insert(format!("{path}_to_subscriber_p99_ms"), p.p99);
    }
    Ok((figures, written))
}

/// `writers` writers made by `make`, each writing until `duration` has passed: (events
/// written, events per second).
async fn throughput<W, F>(writers: usize, duration: Duration, make: W) -> Result<(u64, f64), String>
where
    W: Fn(usize) -> F,
    F: Future<Output = Result<Box<dyn BatchWriter>, String>>,
{
    let mut ready = Vec::new();
    for w in 0..writers {
        ready.push(make(w).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|mut writer| {
            tokio::spawn(async move {
                let mut events = 0u64;
                while Instant::now() < deadline {
                    events += writer.write().await?;
                }
                Ok::<u64, String>(events)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok((total, total as f64 / started.elapsed().as_secs_f64()))
}

/// Something that writes one batch at a time and says how many events it wrote.
trait BatchWriter: Send {
    fn write(&mut self)
    -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// A `POST` writer on its own keep-alive connection.
struct PostWriter {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: String,
    /// Named in errors.
    session: String,
    body: Bytes,
    events: u64,
}

async fn post_writer(
    addr: SocketAddr,
    task: String,
    session: String,
    batch: usize,
) -> Result<Box<dyn BatchWriter>, String> {
    let event =
        serde_json::json!({ "session": session, "type": "assistant", "content": "x".repeat(64) });
    let body = serde_json::Value::Array(vec![event; batch]).to_string();
    Ok(Box::new(PostWriter {
        sender: client::sender(addr).await?,
        addr,
        path: format!("/tasks/{task}/events"),
        session: session.clone(),
        body: Bytes::from(body),
        events: batch as u64,
    }))
}

impl BatchWriter for PostWriter {
    fn write(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let status = post(&mut self.sender, self.addr, &self.path, self.body.clone())
                .await
                .map_err(|e| format!("{e} (session {})", self.session))?;
            match status {
                201 => Ok(self.events),
                // Over --max-writes: counted as nothing written; the writer goes on.
                503 => Ok(0),
                other => Err(format!("POST {}: {other}", self.path)),
            }
        })
    }
}

/// An `INSERT` writer on its own connection.
struct InsertWriter {
    client: Client,
    task: String,
    session: String,
    contents: Vec<String>,
}

async fn insert_writer(
    url: String,
    task: String,
    session: String,
    batch: usize,
) -> Result<Box<dyn BatchWriter>, String> {
    Ok(Box::new(InsertWriter {
        client: connect(&url).await?,
        task,
        session,
        contents: vec!["x".repeat(64); batch],
    }))
}

impl BatchWriter for InsertWriter {
    fn write(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let written = if self.contents.len() == 1 {
                self.client
                    .execute(
                        "INSERT INTO agent_events (task_id, session_id, event_type, content) VALUES ($1, $2, 'assistant', $3)",
                        &[&self.task, &self.session, &self.contents[0]],
                    )
                    .await
            } else {
                self.client
                    .execute(INSERT_SQL, &[&self.task, &self.session, &self.contents])
                    .await
            };
            written.map_err(|e| format!("INSERT: {}", pg_error(&e)))
        })
    }
}

/// How the latency runs write.
#[derive(Clone, Copy)]
enum Via {
    Post,
    Insert,
}

/// Write-to-subscriber latency of `events` written one at a time into `task` (microseconds):
/// each event carries its write time, and a subscriber on the stream reads it back.
async fn latency(
    addr: SocketAddr,
    url: &str,
    task: &str,
    via: Via,
    events: u64,
) -> Result<Histogram<u64>, String> {
    let mut stream = client::sender::<Empty<Bytes>>(addr).await?;
    let request = Request::get(format!("/tasks/{task}/events/stream"))
        .header("host", addr.to_string())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = stream
        .send_request(request)
        .await
        .map_err(|e| format!("stream: {e}"))?;
    let mut body = response.into_body();
    let reader = tokio::spawn(async move {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut pending = Vec::new();
        while histogram.len() < events {
            let frame = body
                .frame()
                .await
                .ok_or("the stream ended")?
                .map_err(|e| e.to_string())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = pending.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&block).lines() {
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    let value: serde_json::Value =
                        serde_json::from_str(data).map_err(|e| e.to_string())?;
                    if let Some(sent) = value["content"]
                        .as_str()
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        histogram
                            .record(now_micros().saturating_sub(sent).max(1))
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok::<_, String>(histogram)
    });
    let session = format!("{task}-latency");
    let mut sender = client::sender::<Full<Bytes>>(addr).await?;
    let client = connect(url).await?;
    let path = format!("/tasks/{task}/events");
    for _ in 0..events {
        let content = now_micros().to_string();
        match via {
            Via::Post => {
                let body = serde_json::json!({ "session": session, "type": "assistant", "content": content });
                let status = post(&mut sender, addr, &path, Bytes::from(body.to_string())).await?;
                if status != 201 {
                    return Err(format!("POST {path}: {status}"));
                }
            }
            Via::Insert => {
                client
                    .execute(
                        "INSERT INTO agent_events (task_id, session_id, event_type, content) VALUES ($1, $2, 'assistant', $3)",
                        &[&task, &session.as_str(), &content],
                    )
                    .await
                    .map_err(|e| format!("INSERT: {}", pg_error(&e)))?;
            }
        }
        tokio::time::sleep(LATENCY_GAP).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .map_err(|_| "the subscriber did not receive every event".to_owned())?
        .map_err(|e| e.to_string())?
}

/// `POST path` with a JSON `body`; the status (the body of a `201` or `503` is dropped, any
/// other is the error).
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
) -> Result<u16, String> {
    let request = Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = response.status().as_u16();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?
        .to_bytes();
    if status != 201 && status != 503 {
        return Err(format!(
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(status)
}

/// Microseconds since the Unix epoch.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
