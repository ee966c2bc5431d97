//! Every route of the server, declared once: [`endpoint`] is the one `match` over method and
//! path that the router dispatches on, and [`Endpoint::api_route`] names each API endpoint's
//! route as the OpenAPI document (`/openapi.json`) does, so a test proves the two agree both
//! ways.

use http::Method;

/// What a request asks for. Path segments are borrowed from the request, still
/// percent-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint<'a> {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET /tasks/{id}/events/stream`.
    Stream(&'a str),
    /// `GET /events/stream?task=…`: several tasks over one connection.
    MultiStream,
    /// `GET /tasks/{id}/events`: a page as JSON.
    EventPage(&'a str),
    /// `POST /tasks/{id}/events`.
    PostEvents(&'a str),
    /// `GET /tasks/{id}`: JSON, or the viewer's page for a browser.
    Task(&'a str),
    /// `PUT /tasks/{id}`.
    PutTask(&'a str),
    /// `GET /tasks`: the task list as JSON, or live as an event stream.
    Tasks,
    /// `POST /session`.
    Session,
    /// `DELETE /session`.
    EndSession,
    /// `GET /`: the viewer's task list.
    Index,
    /// `GET /watch?task=…`: the viewer's page of several tasks.
    Watch,
    /// `GET /assets/{name}`.
    Asset(&'a str),
    /// A CORS preflight `OPTIONS` of a known path (CORS on).
    Preflight,
    /// A known path with another method: `405` with these in `allow`.
    MethodNotAllowed(&'static str),
    /// No such path.
    NotFound,
}

/// The endpoint of `method` on the path `segments` (the path split at `/`, without the
/// leading empty one); `cors`: whether preflights are answered.
pub(crate) fn endpoint<'a>(method: &Method, segments: &[&'a str], cors: bool) -> Endpoint<'a> {
    use Endpoint as E;
    match (method, segments) {
        (&Method::GET, ["healthz"]) => E::Healthz,
        (&Method::GET, ["readyz"]) => E::Readyz,
        (&Method::GET, ["metrics"]) => E::Metrics,
        (&Method::GET, ["openapi.json"]) => E::OpenApi,
        (&Method::GET, ["tasks", id, "events", "stream"]) => E::Stream(id),
        (&Method::GET, ["events", "stream"]) => E::MultiStream,
        (&Method::GET, ["tasks", id, "events"]) => E::EventPage(id),
        (&Method::POST, ["tasks", id, "events"]) => E::PostEvents(id),
        (&Method::GET, ["tasks", id]) => E::Task(id),
        (&Method::PUT, ["tasks", id]) => E::PutTask(id),
        (&Method::GET, ["tasks"]) => E::Tasks,
        (&Method::GET, [""]) => E::Index,
        (&Method::GET, ["watch"]) => E::Watch,
        (&Method::GET, ["assets", name]) => E::Asset(name),
        (&Method::POST, ["session"]) => E::Session,
        (&Method::DELETE, ["session"]) => E::EndSession,
        (&Method::OPTIONS, path) if cors && allowed(path).is_some() => E::Preflight,
        (_, path) => allowed(path).map_or(E::NotFound, E::MethodNotAllowed),
    }
}

/// The methods a known path allows, `None` for an unknown path.
fn allowed(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["openapi.json"]
        | [""]
        | ["watch"]
        | ["assets", _]
        | ["tasks", _, "events", "stream"]
        | ["events", "stream"]
        | ["tasks"] => Some("GET"),
        ["tasks", _, "events"] => Some("GET, POST"),
        ["tasks", _] => Some("GET, PUT"),
        ["session"] => Some("POST, DELETE"),
        _ => None,
    }
}

impl Endpoint<'_> {
    /// The API route of this endpoint as the OpenAPI document names it (method in lower case,
    /// path template); `None` for what the document leaves out (the viewer's HTML and assets,
    /// which `GET /tasks/{id}` serves to browsers besides its JSON) and for refusals. Only the
    /// tests read it: they hold the router and the document to it.
    #[cfg(test)]
    pub(crate) fn api_route(&self) -> Option<(&'static str, &'static str)> {
        use Endpoint as E;
        Some(match self {
            E::Healthz => ("get", "/healthz"),
            E::Readyz => ("get", "/readyz"),
            E::Metrics => ("get", "/metrics"),
            E::OpenApi => ("get", "/openapi.json"),
            E::Stream(_) => ("get", "/tasks/{id}/events/stream"),
            E::MultiStream => ("get", "/events/stream"),
            E::EventPage(_) => ("get", "/tasks/{id}/events"),
            E::PostEvents(_) => ("post", "/tasks/{id}/events"),
            E::Task(_) => ("get", "/tasks/{id}"),
            E::PutTask(_) => ("put", "/tasks/{id}"),
            E::Tasks => ("get", "/tasks"),
            E::Session => ("post", "/session"),
            E::EndSession => ("delete", "/session"),
            E::Index
            | E::Watch
            | E::Asset(_)
            | E::Preflight
            | E::MethodNotAllowed(_)
            | E::NotFound => {
                return None;
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One request of every endpoint the router serves. The match below fails to compile when
    /// an endpoint is added, until it is added here too.
    pub(crate) fn every_endpoint() -> Vec<(Method, &'static str, Endpoint<'static>)> {
        use Endpoint as E;
        let all = vec![
            (Method::GET, "/healthz", E::Healthz),
            (Method::GET, "/readyz", E::Readyz),
            (Method::GET, "/metrics", E::Metrics),
            (Method::GET, "/openapi.json", E::OpenApi),
            (Method::GET, "/tasks/x/events/stream", E::Stream("x")),
            (Method::GET, "/events/stream", E::MultiStream),
            (Method::GET, "/tasks/x/events", E::EventPage("x")),
            (Method::POST, "/tasks/x/events", E::PostEvents("x")),
            (Method::GET, "/tasks/x", E::Task("x")),
            (Method::PUT, "/tasks/x", E::PutTask("x")),
            (Method::GET, "/tasks", E::Tasks),
            (Method::POST, "/session", E::Session),
            (Method::DELETE, "/session", E::EndSession),
            (Method::GET, "/", E::Index),
            (Method::GET, "/watch", E::Watch),
            (Method::GET, "/assets/x", E::Asset("x")),
            (Method::OPTIONS, "/tasks", E::Preflight),
            (Method::PATCH, "/tasks", E::MethodNotAllowed("GET")),
            (Method::GET, "/nope", E::NotFound),
        ];
        for (_, _, endpoint) in &all {
            match endpoint {
                E::Healthz
                | E::Readyz
                | E::Metrics
                | E::OpenApi
                | E::Stream(_)
                | E::MultiStream
                | E::EventPage(_)
                | E::PostEvents(_)
                | E::Task(_)
                | E::PutTask(_)
                | E::Tasks
                | E::Session
                | E::EndSession
                | E::Index
                | E::Watch
                | E::Asset(_)
                | E::Preflight
                | E::MethodNotAllowed(_)
                | E::NotFound => {}
            }
        }
        all
    }

    /// The endpoint of a path as the router splits it.
    pub(crate) fn resolve<'a>(method: &Method, path: &'a str) -> Endpoint<'a> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        endpoint(method, &segments, true)
    }

    #[test]
    fn every_endpoint_is_where_it_is_declared() {
        for (method, path, expected) in every_endpoint() {
            assert_eq!(resolve(&method, path), expected, "{method} {path}");
        }
        assert_eq!(
            endpoint(&Method::OPTIONS, &["tasks"], false),
            Endpoint::MethodNotAllowed("GET")
        );
        assert_eq!(
            resolve(&Method::DELETE, "/tasks/x"),
            Endpoint::MethodNotAllowed("GET, PUT")
        );
    }
}
