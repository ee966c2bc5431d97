//! The router: dispatches the one hand-written match over method and path
//! ([`crate::http::routes`]) to one function per endpoint. The service is infallible: every
//! failure becomes a response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::Service;

use crate::api;
use crate::api::access::may_read;
use crate::app::App;
use crate::client_stream::{self, ConnectionAbort, Start};
use crate::http::accept::{self, Representation};
use crate::http::auth::{self, Denied, Grant};
use crate::http::idle::{Activity, Tracked};
use crate::http::refusal::{
    authorize, challenge, database_failed, denied_message, unauthorized, unavailable,
};
use crate::http::request;
use crate::http::response::{self, Body};
use crate::http::routes::{Endpoint, endpoint};
use crate::viewer;

/// The service of one connection: the router, with the connection's abort handle in every
/// request's extensions. Its future is boxed: hyper keeps room for one in-flight request future
/// per connection for the connection's whole life, and the router's is large while a stream
/// response is being set up.
#[derive(Clone)]
pub(crate) struct Router {
    app: Arc<App>,
    abort: ConnectionAbort,
    /// The connection's open requests, counted for its idle timeout (HTTP/2 only).
    activity: Option<Activity>,
}

impl Router {
    pub(crate) fn new(app: Arc<App>, abort: ConnectionAbort, activity: Option<Activity>) -> Router {
        Router {
            app,
            abort,
            activity,
        }
    }
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.abort.clone());
        let app = self.app.clone();
        match self.activity.as_ref().map(Activity::enter) {
            None => Box::pin(handle(app, req)),
            Some(active) => Box::pin(async move {
                let response = handle(app, req).await?;
                Ok(response.map(|body| Tracked::new(body, active).boxed()))
            }),
        }
    }
}

/// Longest a `/metrics` scrape waits for PostgreSQL's notification queue usage; past it the
/// scrape answers with the last value it read.
const SCRAPE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers one request.
async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // CORS decorates the answer by the request's `Origin`, kept before the body is read.
    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let mut response = route(&app, req).await;
    if let Some(cors) = &app.cors {
        cors.decorate(origin.as_ref(), response.headers_mut());
    }
    Ok(response)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > app.config.max_url_bytes {
        return response::error(StatusCode::URI_TOO_LONG, "request target too long");
    }
    // Kept apart from `req`, which a write endpoint takes whole for its body (a cheap clone:
    // the URI shares its bytes).
    let uri = req.uri().clone();
    let segments: Vec<&str> = uri.path().split('/').skip(1).collect();
    let query = uri.query();
    match endpoint(req.method(), &segments, app.cors.is_some()) {
        Endpoint::Healthz => healthz(),
        Endpoint::Readyz => readyz(app).await,
        Endpoint::Metrics => metrics(app, req.headers()).await,
        Endpoint::OpenApi => api::openapi::document(),
        Endpoint::Stream(id) => for_task(id, async |id| events_stream(app, &req, id).await).await,
        Endpoint::MultiStream => multi_stream(app, &req).await,
        Endpoint::EventPage(id) => {
            for_task(id, async |id| {
                api::events::page(app, req.headers(), query, id).await
            })
            .await
        }
        Endpoint::PostEvents(id) => {
            for_task(id, async |id| api::events::post(app, req, id).await).await
        }
        Endpoint::Task(id) => {
            for_task(id, async |id| task_resource(app, req.headers(), id).await).await
        }
        Endpoint::PutTask(id) => for_task(id, async |id| api::tasks::put(app, req, id).await).await,
        Endpoint::Tasks => task_list(app, req.headers(), query).await,
        Endpoint::Index => index(app, &req).await,
        Endpoint::Watch => watch_page(app, &req).await,
        Endpoint::Asset(name) => asset(&req, name),
        Endpoint::Session => session(app, req.headers()),
        Endpoint::EndSession => end_session(app),
        Endpoint::Preflight => preflight(app, req.headers()),
        Endpoint::MethodNotAllowed(allow) => response::method_not_allowed(allow),
        Endpoint::NotFound => response::error(StatusCode::NOT_FOUND, "no such path"),
    }
}

/// A request on a path that names a task: its id is checked first (`400` when it does not
/// parse, whatever else is wrong), then `answer` gets it.
async fn for_task(
    segment: &str,
    answer: impl AsyncFnOnce(&str) -> Response<Body>,
) -> Response<Body> {
    match request::task_id(segment) {
        Ok(id) => answer(&id).await,
        Err(error) => response::error(StatusCode::BAD_REQUEST, &error.0),
    }
}

/// `GET /tasks/{id}`: the task as JSON, or the viewer's live page for a client that prefers
/// HTML (a browser). Either way `vary: accept`.
async fn task_resource(app: &App, headers: &HeaderMap, task_id: &str) -> Response<Body> {
    let offered = [Representation::Json, Representation::Html];
    varies_by_accept(match accept::preferred(headers, &offered) {
        Representation::Html => task_page(app, headers, task_id).await,
        _ => api::tasks::get(app, headers, task_id).await,
    })
}

/// `GET /tasks`: the task list as JSON, with `vary: accept` (other representations of the same
/// list join here, chosen by `Accept` with [`accept::preferred`]).
async fn task_list(app: &Arc<App>, headers: &HeaderMap, query: Option<&str>) -> Response<Body> {
    let offered = [Representation::Json, Representation::EventStream];
    varies_by_accept(match accept::preferred(headers, &offered) {
        Representation::EventStream => task_list_stream(app, headers, query).await,
        _ => api::tasks::list(app, headers, query).await,
    })
}

/// `answer` marked as chosen by the request's `Accept` (`vary: accept`), for caches.
fn varies_by_accept(mut answer: Response<Body>) -> Response<Body> {
    answer
        .headers_mut()
        .append(VARY, HeaderValue::from_static("accept"));
    answer
}

/// `200` while the process serves.
fn healthz() -> Response<Body> {
    response::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// `200` when PostgreSQL answers, `503` otherwise or while the server drains. Answered from
/// the shared health state, so a burst of probes costs the database one query.
async fn readyz(app: &App) -> Response<Body> {
    if app.shutdown.is_triggered() {
        return unavailable("shutting down");
    }
    if app.health.ready(&app.db).await {
        response::json(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
    } else {
        unavailable("database unavailable")
    }
}

/// The counters in the OpenMetrics text format (a token is needed when auth is on), with
/// PostgreSQL's notification queue usage read now (the last value if it cannot be read).
async fn metrics(app: &App, headers: &HeaderMap) -> Response<Body> {
    if let Err(denied) = authorize(app, headers) {
        return unauthorized(denied);
    }
    match tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, app.db.notification_queue_usage()).await {
        Ok(Ok(usage)) => {
            app.metrics.notification_queue_usage.set(usage);
        }
        Ok(Err(error)) => tracing::debug!(%error, "cannot read the notification queue usage"),
        Err(_) => tracing::debug!("reading the notification queue usage timed out"),
    }
    response::with_type(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.encode().into(),
    )
}

/// `GET /`: the viewer's task list, newest first, one capped page at a time (`?limit=`,
/// `?before=`).
/// With authentication on, it lists only the tasks the reader's token covers.
async fn index<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let page = match request::list_page(req.uri().query()) {
        Ok(page) => page,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    let grant = match authorize(app, req.headers()) {
        Ok(grant) => grant,
        Err(denied) => return sign_in(denied),
    };
    match api::tasks::read_page(app, &page, grant.as_ref()).await {
        Ok((tasks, more)) => {
            let max = app.config.max_stream_tasks;
            response::page(viewer::index_page(&tasks, &page, more, max))
        }
        Err(error) => database_failed(&error, "cannot list tasks"),
    }
}

/// `GET /tasks/{id}`: the viewer's live page of one task (a token that covers it when
/// authentication is on).
async fn task_page(app: &App, headers: &HeaderMap, task_id: &str) -> Response<Body> {
    match authorize(app, headers) {
        Ok(Some(grant)) if !grant.covers(task_id) => {
            return response::error(StatusCode::FORBIDDEN, "the token does not cover this task");
        }
        Ok(_) => {}
        Err(denied) => return sign_in(denied),
    }
    let task = {
        let _turn = app.read_slot().await;
        app.db.task(task_id).await
    };
    match task {
        Ok(Some(task)) => response::page(viewer::task_page(&task)),
        Ok(None) => response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => database_failed(&error, "cannot read a task"),
    }
}

/// `GET /watch?task=a&task=b…`: the viewer's page of several tasks over one connection (a
/// token that covers them all when authentication is on).
async fn watch_page<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let task_ids = match request::task_list(req.uri().query(), app.config.max_stream_tasks) {
        Ok(ids) => ids,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    match authorize(app, req.headers()) {
        Ok(Some(grant)) if !task_ids.iter().all(|id| grant.covers(id)) => {
            return response::error(
                StatusCode::FORBIDDEN,
                "the token does not cover these tasks",
            );
        }
        Ok(_) => {}
        Err(denied) => return sign_in(denied),
    }
    let ids: Vec<&str> = task_ids.iter().map(String::as_str).collect();
    let rows = {
        let _turn = app.read_slot().await;
        app.db.task_rows(&ids).await
    };
    match rows {
        Ok(rows) => response::page(viewer::watch_page(&task_ids, &rows)),
        Err(error) => database_failed(&error, "cannot read tasks"),
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

/// `POST /session`: a valid bearer token becomes the token cookie (see
/// [`crate::http::cookie`]), so that a page can hand its token to EventSource (which cannot set
/// headers).
fn session(app: &App, headers: &HeaderMap) -> Response<Body> {
    let Some(auth) = &app.auth else {
        return response::error(StatusCode::NOT_FOUND, "authentication is off");
    };
    let Some(token) = auth::bearer_token(headers) else {
        return unauthorized(Denied::Missing);
    };
    let grant = match auth.verify(&token) {
        Ok(grant) => grant,
        Err(denied) => return unauthorized(denied),
    };
    with_cookies(
        response::empty(StatusCode::NO_CONTENT),
        app.cookies.set(&token, grant.remaining()),
    )
}

/// `DELETE /session`: removes the token cookie (signing out). No token is needed: an expired
/// one must be removable too, and removing a cookie grants nothing.
fn end_session(app: &App) -> Response<Body> {
    if app.auth.is_none() {
        return response::error(StatusCode::NOT_FOUND, "authentication is off");
    }
    with_cookies(response::empty(StatusCode::NO_CONTENT), app.cookies.clear())
}

/// `answer` with a `Set-Cookie` header per cookie.
fn with_cookies(mut answer: Response<Body>, cookies: Vec<String>) -> Response<Body> {
    for cookie in cookies {
        match HeaderValue::from_str(&cookie) {
            Ok(value) => {
                answer.headers_mut().append(SET_COOKIE, value);
            }
            // A verified JWT is base64url and dots, and the attributes are ours: a cookie
            // always fits in a header.
            Err(_) => return response::error(StatusCode::BAD_REQUEST, "token cannot be a cookie"),
        }
    }
    answer
}

/// A preflight `OPTIONS` (CORS on).
fn preflight(app: &App, headers: &HeaderMap) -> Response<Body> {
    match &app.cors {
        Some(cors) => cors.preflight(headers),
        None => response::method_not_allowed("GET"),
    }
}

/// `GET /tasks/{id}/events/stream`: the task's latest session as Server-Sent Events.
async fn events_stream<B>(app: &Arc<App>, req: &Request<B>, task_id: &str) -> Response<Body> {
    let cursor = match request::resume_cursor(req.headers(), req.uri().query()) {
        Ok(cursor) => cursor,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    let grant = match may_read(app, req.headers(), task_id) {
        Ok(grant) => grant,
        Err(refused) => return *refused,
    };
    let slot = match app.stream_slot() {
        Ok(slot) => slot,
        Err(reason) => return unavailable(reason),
    };
    // Subscribe before reading the position: whatever commits after the read then reaches the
    // stream live, and whatever committed before is in the table.
    let subscription = app.hub.subscribe(task_id);
    let position = {
        let _turn = app.read_slot().await;
        app.db.position(task_id).await
    };
    let position = match position {
        Ok(Some(position)) => position,
        Ok(None) => return response::error(StatusCode::NOT_FOUND, "no such task"),
        Err(error) => return database_failed(&error, "cannot start a stream"),
    };
    if let Some(cursor) = &cursor
        && client_stream::already_complete(cursor, &position)
    {
        // Stops a browser's EventSource from reconnecting forever after `complete`.
        return response::empty(StatusCode::NO_CONTENT);
    }
    let body = client_stream::spawn(
        app.clone(),
        Start {
            task_id: Arc::from(task_id),
            subscription,
            position,
            cursor,
            abort: req.extensions().get::<ConnectionAbort>().cloned(),
            token_expires: grant.map(|grant| grant.expires_at),
            slot,
        },
    );
    response::event_stream(body)
}

// === GET /events/stream (issue 15) ===

/// `GET /events/stream?task=a&task=b…`: several tasks over one connection (see
/// [`client_stream::open_multi`]). Every task is checked against the token before any is
/// looked up, so a token cannot probe which tasks exist.
async fn multi_stream<B>(app: &Arc<App>, req: &Request<B>) -> Response<Body> {
    let max = app.config.max_stream_tasks;
    let query = req.uri().query();
    let parsed = request::task_list(query, max).and_then(|tasks| {
        Ok((
            tasks,
            request::resume_multi_cursor(req.headers(), query, max)?,
        ))
    });
    let (task_ids, cursor) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return response::error(StatusCode::BAD_REQUEST, &error.0),
    };
    let grant = match authorize(app, req.headers()) {
        Ok(grant) => grant,
        Err(denied) => return unauthorized(denied),
    };
    if let Some(grant) = &grant
        && let Some(refused) = task_ids.iter().find(|id| !grant.covers(id))
    {
        let message = format!("the token does not cover task {refused:?}");
        return response::error(StatusCode::FORBIDDEN, &message);
    }
    let slot = match app.stream_slot() {
        Ok(slot) => slot,
        Err(reason) => return unavailable(reason),
    };
    // Subscribe to every tail before reading the positions, as a single stream does.
    let subscriptions: Vec<_> = task_ids.iter().map(|id| app.hub.subscribe(id)).collect();
    let ids: Vec<&str> = task_ids.iter().map(String::as_str).collect();
    let positions = {
        let _turn = app.read_slot().await;
        app.db.positions(&ids).await
    };
    let mut positions: std::collections::HashMap<String, _> = match positions {
        Ok(rows) => rows.into_iter().collect(),
        Err(error) => return database_failed(&error, "cannot start a stream"),
    };
    let tasks = task_ids
        .iter()
        .zip(subscriptions)
        .map(|(id, subscription)| client_stream::MultiTask {
            task_id: Arc::from(id.as_str()),
            subscription,
            position: positions.remove(id),
        })
        .collect();
    let start = client_stream::MultiStart {
        tasks,
        cursor,
        abort: req.extensions().get::<ConnectionAbort>().cloned(),
        token_expires: grant.map(|grant| grant.expires_at),
        slot,
    };
    match client_stream::open_multi(app.clone(), start) {
        Ok(client_stream::Opened::Stream(body)) => response::event_stream(body),
        Ok(client_stream::Opened::NothingNew) => response::empty(StatusCode::NO_CONTENT),
        Ok(client_stream::Opened::Missing(id)) => {
            response::error(StatusCode::NOT_FOUND, &format!("no such task: {id:?}"))
        }
        Err(unmatched) => response::error(StatusCode::BAD_REQUEST, unmatched.0),
    }
}

/// `GET /tasks` with `Accept: text/event-stream`: the live task list (see
/// [`client_stream::spawn_list`]), `?limit=` tasks in each snapshot.
async fn task_list_stream(
    app: &Arc<App>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    let (page, grant) = match api::tasks::list_request(app, headers, query) {
        Ok(request) => request,
        Err(refused) => return *refused,
    };
    let slot = match app.stream_slot() {
        Ok(slot) => slot,
        Err(reason) => return unavailable(reason),
    };
    let start = client_stream::ListStart {
        limit: page.limit,
        only: grant.as_ref().and_then(Grant::task_ids),
        token_expires: grant.map(|grant| grant.expires_at),
        slot,
    };
    response::event_stream(client_stream::spawn_list(app.clone(), start))
}

/// `401` for a viewer page: the sign-in page (a person is reading), with the same challenge.
fn sign_in(denied: Denied) -> Response<Body> {
    let mut answer = response::page(viewer::signin_page(denied_message(denied)));
    *answer.status_mut() = StatusCode::UNAUTHORIZED;
    challenge(&mut answer, denied);
    answer
}
