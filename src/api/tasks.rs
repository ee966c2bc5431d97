//! `PUT /tasks/{id}` (create `201` or update `200`; leaving `InProgress` ends the task's streams
//! with `complete`, through the same trigger as an SQL `UPDATE`), `GET /tasks/{id}` and
//! `GET /tasks` as JSON.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::api::access::{may_read, may_write};
use crate::api::events::refused_input;
use crate::api::input;
use crate::app::App;
use crate::db::{DbError, TaskListing, TaskSummary};
use crate::http::auth::Grant;
use crate::http::body;
use crate::http::refusal::{authorize, database_failed, unauthorized, unavailable};
use crate::http::request::{self, ListPage};
use crate::http::response::{self, Body};

/// `PUT /tasks/{id}`.
pub(crate) async fn put<B>(app: &App, req: Request<B>, task_id: &str) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(refused) = may_write(app, req.headers(), task_id) {
        return refused;
    }
    let body =
        match body::read_json(req, app.config.max_write_bytes, app.config.header_timeout).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
    let fields = match input::task(&body) {
        Ok(fields) => fields,
        Err(error) => return refused_input(&error),
    };
    let Some(_turn) = app.write_slot().await else {
        return unavailable("too many writes at once");
    };
    match app
        .db
        .put_task(task_id, fields.title.as_deref(), fields.status.as_deref())
        .await
    {
        Ok(put) => {
            let status = if put.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            response::json(status, &put.task.to_json())
        }
        Err(error) => database_failed(&error, "cannot write a task"),
    }
}

/// `GET /tasks/{id}` as JSON.
pub(crate) async fn get(app: &App, headers: &HeaderMap, task_id: &str) -> Response<Body> {
    if let Err(refused) = may_read(app, headers, task_id) {
        return *refused;
    }
    let task = {
        let _turn = app.read_slot().await;
        app.db.task(task_id).await
    };
    match task {
        Ok(Some(task)) => response::json(StatusCode::OK, &task.to_json()),
        Ok(None) => response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => database_failed(&error, "cannot read a task"),
    }
}

/// The page a task-list request asks for (`?limit=`, `?before=`) and the grant it holds, or the
/// answer refusing it (`400`, `401`): what `GET /tasks` checks first, as JSON or as a stream.
pub(crate) fn list_request(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(ListPage, Option<Grant>), Box<Response<Body>>> {
    let page = request::list_page(query)
        .map_err(|error| Box::new(response::error(StatusCode::BAD_REQUEST, &error.0)))?;
    let grant = authorize(app, headers).map_err(|denied| Box::new(unauthorized(denied)))?;
    Ok((page, grant))
}

/// `GET /tasks` as JSON: newest first, `?limit=` (1 to 200, default 50) and `?before=` (the
/// `next` of the previous page); with authentication on, only the tasks the token may read.
pub(crate) async fn list(app: &App, headers: &HeaderMap, query: Option<&str>) -> Response<Body> {
    let (page, grant) = match list_request(app, headers, query) {
        Ok(request) => request,
        Err(refused) => return *refused,
    };
    match read_page(app, &page, grant.as_ref()).await {
        Ok((tasks, more)) => {
            let next = more
                .then(|| tasks.last().map(|task| task.id.clone()))
                .flatten();
            let tasks: Vec<Value> = tasks.iter().map(TaskSummary::to_json).collect();
            response::json(StatusCode::OK, &json!({ "tasks": tasks, "next": next }))
        }
        Err(error) => database_failed(&error, "cannot list tasks"),
    }
}

/// One page of the task list, newest first, limited to the tasks `grant` may read (all without
/// authentication), and whether an older page follows. Shared by `GET /tasks` and the viewer's
/// `GET /`.
pub(crate) async fn read_page(
    app: &App,
    page: &ListPage,
    grant: Option<&Grant>,
) -> Result<(Vec<TaskSummary>, bool), DbError> {
    let only = grant.and_then(Grant::task_ids);
    // One row more than the page tells whether an older page exists.
    let listing = TaskListing {
        limit: page.limit + 1,
        before: page.before.as_deref(),
        only: only.as_deref(),
    };
    let mut tasks = {
        let _turn = app.read_slot().await;
        app.db.tasks(listing).await?
    };
    let more = tasks.len() as i64 > page.limit;
    tasks.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    Ok((tasks, more))
}
