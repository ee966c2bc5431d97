//! The router: one hand-written match over method and path, one function per endpoint. The
//! service is infallible: every failure becomes a response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::cursor::Cursor;
use crate::db::{TaskListing, TaskPosition};
use crate::request;
use crate::response::{self, Body};
use crate::server::ConnectionAbort;
use crate::stream::{self, Start};
use crate::viewer;

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
        (&Method::GET, [""]) => index(&app, req.uri().query()).await,
        (&Method::GET, ["tasks", id]) => task_page(&app, id).await,
        (&Method::GET, ["assets", name]) => asset(&req, name),
        (
            _,
            ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["tasks", _, "events", "stream"]
            | [""]
            | ["tasks", _]
            | ["assets", _],
        ) => response::method_not_allowed("GET"),
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

/// `GET /`: the viewer's task list, newest first, one capped page at a time (`?limit=`,
/// `?before=`).
async fn index(app: &App, query: Option<&str>) -> Response<Body> {
    let page = match request::list_page(query) {
        Ok(page) => page,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    // One row more than the page tells whether an older page exists.
    let listing = TaskListing {
        limit: page.limit + 1,
        before: page.before.as_deref(),
        // Authentication (design.md §4) passes the task ids the reader's token covers here.
        only: None,
    };
    match app.db.tasks(listing).await {
        Ok(mut tasks) => {
            let more = tasks.len() as i64 > page.limit;
            tasks.truncate(page.limit as usize);
            response::page(viewer::index_page(&tasks, &page, more))
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list tasks");
            unavailable("database unavailable")
        }
    }
}

/// `GET /tasks/{id}`: the viewer's live page of one task.
async fn task_page(app: &App, segment: &str) -> Response<Body> {
    let task_id = match request::task_id(segment) {
        Ok(id) => id,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    match app.db.task(&task_id).await {
        Ok(Some(task)) => response::page(viewer::task_page(&task)),
        Ok(None) => response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => {
            tracing::warn!(%error, "cannot read a task");
            unavailable("database unavailable")
        }
    }
}

/// `GET /assets/{name}`: the viewer's stylesheet and script, embedded in the binary.
fn asset<B>(req: &Request<B>, name: &str) -> Response<Body> {
    match viewer::asset(name) {
        Some(asset) => response::static_file(
            asset.content_type,
            asset.body,
            &asset.etag(),
            req.headers().get(http::header::IF_NONE_MATCH),
        ),
        None => response::error(StatusCode::NOT_FOUND, "no such path"),
    }
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
