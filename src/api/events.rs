//! `POST /tasks/{id}/events` (a batch of one session's events, all or nothing, optionally under
//! an `Idempotency-Key`) and `GET /tasks/{id}/events` (a page of the latest session's events,
//! with the ids, names and data the stream sends, so a program can switch between paging and
//! streaming at any cursor).

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::access::{may_read, may_write};
use crate::api::input::{self, InputError};
use crate::app::App;
use crate::db::{Answer, DbError, EventBatch, KEY_WAIT, KeyClaim, Keyed, PageLimit, Refusal};
use crate::http::body;
use crate::http::refusal::{database_failed, retry_later, unavailable};
use crate::http::request::query_param;
use crate::http::response::{self, Body};
use crate::wire::cursor::{Cursor, session_prefix};
use crate::wire::event::{event_data, event_name};

/// Events on one page of `GET /tasks/{id}/events` unless `?limit=` asks for another number.
pub(crate) const DEFAULT_EVENTS_PAGE: i64 = 100;

/// Most events on one page, whatever `?limit=` asks.
pub(crate) const MAX_EVENTS_PAGE: i64 = 1000;

/// The header that marks an answer replayed for an `Idempotency-Key`.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// `POST /tasks/{id}/events`.
pub(crate) async fn post<B>(app: &App, req: Request<B>, task_id: &str) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(refused) = may_write(app, req.headers(), task_id) {
        return refused;
    }
    let key = match input::idempotency_key(req.headers()) {
        Ok(key) => key,
        Err(error) => return refused_input(&error),
    };
    let body =
        match body::read_json(req, app.config.max_write_bytes, app.config.header_timeout).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
    let batch = match input::events(&body, app.config.max_write_events) {
        Ok(batch) => batch,
        Err(error) => return refused_input(&error),
    };
    let Some(_turn) = app.write_slot().await else {
        return unavailable("too many writes at once");
    };
    let rows = EventBatch {
        task_id,
        session: &batch.session,
        types: batch.events.iter().map(|(t, _)| t.as_str()).collect(),
        contents: batch.events.iter().map(|(_, c)| c.as_str()).collect(),
    };
    let prefix = session_prefix(&batch.session);
    let Some(key) = key else {
        return match app.db.write_events(&rows).await {
            Ok(seqs) => send(written(&prefix, &seqs)),
            Err(error) => write_failed(&error, false),
        };
    };
    let body_hash = Sha256::digest(&body);
    let claim = KeyClaim {
        key: &key,
        body_hash: &body_hash,
        window: app.config.idempotency_window,
    };
    match app
        .db
        .write_events_once(&rows, &claim, |seqs| written(&prefix, seqs))
        .await
    {
        Ok(Keyed::Written(answer)) => send(answer),
        Ok(Keyed::Replayed(answer)) => {
            let mut replayed = send(answer);
            replayed
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            replayed
        }
        Ok(Keyed::OtherBody) => response::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used with another body",
        ),
        Err(error) => write_failed(&error, true),
    }
}

/// The `201` of a batch written: each event's cursor, exactly as the stream sends it as `id:`.
fn written(prefix: &str, seqs: &[i64]) -> Answer {
    let events: Vec<Value> = seqs
        .iter()
        .map(|seq| json!({ "id": format!("{prefix}{seq}"), "seq": seq }))
        .collect();
    Answer {
        status: StatusCode::CREATED.as_u16(),
        body: json!({ "events": events }).to_string(),
    }
}

/// An answer as a response.
fn send(answer: Answer) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response::with_type(status, "application/json", Bytes::from(answer.body))
}

/// `400` or `413` for a body or header that was refused.
pub(crate) fn refused_input(error: &InputError) -> Response<Body> {
    let status = match error {
        InputError::Malformed(_) => StatusCode::BAD_REQUEST,
        InputError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
    };
    response::error(status, &error.to_string())
}

/// The answer to a write that PostgreSQL refused or failed.
fn write_failed(error: &DbError, keyed: bool) -> Response<Body> {
    match error.refusal() {
        Some(Refusal::MissingTask) => response::error(StatusCode::NOT_FOUND, "no such task"),
        Some(Refusal::SessionOfAnotherTask) => {
            response::error(StatusCode::CONFLICT, "the session belongs to another task")
        }
        Some(Refusal::LockBusy) if keyed => retry_later(
            StatusCode::CONFLICT,
            &format!(
                "a request with this Idempotency-Key (or of this session) is still running \
                 after {}s; retry",
                KEY_WAIT.as_secs()
            ),
        ),
        _ => database_failed(error, "cannot write events"),
    }
}

/// `GET /tasks/{id}/events?after=<cursor>&limit=<n>`.
pub(crate) async fn page(
    app: &App,
    headers: &http::HeaderMap,
    query: Option<&str>,
    task_id: &str,
) -> Response<Body> {
    if let Err(refused) = may_read(app, headers, task_id) {
        return *refused;
    }
    let (after, limit) = match page_query(query) {
        Ok(asked) => asked,
        Err(message) => return response::error(StatusCode::BAD_REQUEST, &message),
    };
    let _turn = app.read_slot().await;
    let position = match app.db.position(task_id).await {
        Ok(Some(position)) => position,
        Ok(None) => return response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => return database_failed(&error, "cannot read a task"),
    };
    let mut events = Vec::new();
    if let Some((session, _)) = &position.head {
        // A cursor of another (older) session starts the latest from its beginning, as the
        // stream does.
        let from = after
            .filter(|cursor| cursor.session.as_deref() == Some(session.id.as_str()))
            .map_or(0, |cursor| cursor.seq);
        let limit = PageLimit {
            rows: limit,
            bytes: app.config.replay_bytes,
        };
        match app.db.events(&session.id, from, limit).await {
            Ok(page) => {
                events = page
                    .rows
                    .iter()
                    .map(|row| {
                        json!({
                            "id": session.cursor(row.seq),
                            "event": event_name(&row.event_type),
                            "data": event_data(&row.event_type, &row.content),
                        })
                    })
                    .collect();
            }
            Err(error) => return database_failed(&error, "cannot read events"),
        }
    }
    response::json(
        StatusCode::OK,
        &json!({ "events": events, "in_progress": position.in_progress() }),
    )
}

/// `?after=` (a cursor, empty: none) and `?limit=` (1 to [`MAX_EVENTS_PAGE`], capped).
fn page_query(query: Option<&str>) -> Result<(Option<Cursor>, i64), String> {
    let after = match query_param(query, "after").map_err(|e| e.0)? {
        Some(text) if !text.is_empty() => Some(Cursor::parse(&text).map_err(|e| e.to_string())?),
        _ => None,
    };
    let limit = match query_param(query, "limit").map_err(|e| e.0)? {
        None => DEFAULT_EVENTS_PAGE,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_EVENTS_PAGE),
            _ => return Err("limit must be a positive whole number".to_owned()),
        },
    };
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_page_queries() {
        assert_eq!(page_query(None), Ok((None, DEFAULT_EVENTS_PAGE)));
        let (after, limit) = page_query(Some("after=YQ:3&limit=5000")).expect("valid");
        assert_eq!(after.map(|c| c.seq), Some(3));
        assert_eq!(limit, MAX_EVENTS_PAGE);
        assert_eq!(page_query(Some("after=")), Ok((None, DEFAULT_EVENTS_PAGE)));
        assert!(page_query(Some("after=nonsense")).is_err());
        assert!(page_query(Some("limit=0")).is_err());
        assert!(page_query(Some("limit=1&limit=2")).is_err());
    }

    #[test]
    fn answers_cursors_as_the_stream_sends_them() {
        let answer = written(&session_prefix("s-1"), &[4, 5]);
        assert_eq!(answer.status, 201);
        let body: Value = serde_json::from_str(&answer.body).expect("JSON");
        assert_eq!(body["events"][1]["id"], "cy0x:5");
        assert_eq!(body["events"][1]["seq"], 5);
    }
}
