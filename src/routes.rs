//! The router: one hand-written match over method and path, one function per endpoint. The
//! service is infallible: every failure becomes a response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::cursor::Cursor;
use crate::db::TaskPosition;
use crate::request;
use crate::response::{self, Body};
use crate::server::ConnectionAbort;
use crate::stream::{self, Start};

/// Longest `/readyz` waits for PostgreSQL before answering `503`.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let response = match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => healthz(),
        (&Method::GET, ["readyz"]) => readyz(&app).await,
        (&Method::GET, ["metrics"]) => metrics(&app),
        (&Method::GET, ["tasks", id, "events", "stream"]) => events_stream(&app, &req, id).await,
        (_, ["healthz"] | ["readyz"] | ["metrics"] | ["tasks", _, "events", "stream"]) => {
            response::method_not_allowed("GET")
        }
        _ => response::error(StatusCode::NOT_FOUND, "no such path"),
    };
    Ok(response)
}

/// `200` while the process serves.
fn healthz() -> Response<Body> {
    response::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// `200` when PostgreSQL answers, `503` otherwise or while the server drains.
async fn readyz(app: &App) -> Response<Body> {
    if app.shutdown.is_triggered() {
        return response::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match tokio::time::timeout(READY_TIMEOUT, app.db.ping()).await {
        Ok(Ok(())) => response::json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready");
            response::error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(_) => response::error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

/// The counters in the Prometheus text format.
fn metrics(app: &App) -> Response<Body> {
    response::with_type(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.encode().into(),
    )
}

/// `GET /tasks/{id}/events/stream`: the task's latest session as Server-Sent Events.
async fn events_stream<B>(app: &Arc<App>, req: &Request<B>, segment: &str) -> Response<Body> {
    let task_id = match request::task_id(segment) {
        Ok(id) => id,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    let cursor = match request::resume_cursor(req.headers(), req.uri().query()) {
        Ok(cursor) => cursor,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    // Subscribe before reading the position: whatever commits after the read then reaches the
    // stream live, and whatever committed before is in the table.
    let subscription = app.hub.subscribe(&task_id);
    let position = match app.db.position(&task_id).await {
        Ok(Some(position)) => position,
        Ok(None) => return response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => {
            tracing::warn!(%error, "cannot start a stream");
            return unavailable("database unavailable");
        }
    };
    if let Some(cursor) = &cursor
        && already_complete(cursor, &position)
    {
        // Stops a browser's EventSource from reconnecting forever after `complete`.
        return response::empty(StatusCode::NO_CONTENT);
    }
    let body = stream::spawn(
        app.clone(),
        Start {
            task_id: Arc::from(task_id),
            subscription,
            position,
            cursor,
            abort: req.extensions().get::<ConnectionAbort>().cloned(),
        },
    );
    response::event_stream(body)
}

/// Whether a `complete` cursor has nothing left to receive: the task is still not
/// `InProgress` and nothing exists past the cursor.
fn already_complete(cursor: &Cursor, position: &TaskPosition) -> bool {
    if !cursor.complete || position.in_progress {
        return false;
    }
    match (&position.head, &cursor.session) {
        (None, None) => true,
        (Some((session, last_seq)), Some(id)) => session.id == *id && cursor.seq >= *last_seq,
        _ => false,
    }
}

/// `503` with a `retry-after` hint.
fn unavailable(message: &str) -> Response<Body> {
    let mut response = response::error(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("2"),
    );
    response
}
