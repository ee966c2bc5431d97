//! Building responses: JSON errors, JSON bodies, the viewer's pages and files, and the headers
//! of an event stream.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Every response's body type.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A `{"error": message}` response.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    with_type(status, "application/json", Bytes::from(value.to_string()))
}

/// A response with a body of the given content type.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// What the viewer's pages may load and run: scripts, styles and connections from this origin
/// only, no inline script, no plugins, no framing. Even a value that escaped escaping could not
/// run script.
const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A viewer page: HTML, never cached (it shows live data), under [`PAGE_CSP`].
pub(crate) fn page(body: String) -> Response<Body> {
    let mut response = with_type(StatusCode::OK, "text/html; charset=utf-8", body.into());
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A static file embedded in the binary. The browser keeps it but asks again each time
/// (`no-cache`), and `etag` makes that a `304` without a body while it is unchanged.
pub(crate) fn static_file(
    content_type: &'static str,
    body: &'static str,
    etag: &str,
    if_none_match: Option<&HeaderValue>,
) -> Response<Body> {
    let unchanged = if_none_match
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if unchanged {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        with_type(
            StatusCode::OK,
            content_type,
            Bytes::from_static(body.as_bytes()),
        )
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(http::header::ETAG, value);
    }
    response
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = status;
    response
}

/// `405` naming the methods the path allows.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The `200` that carries an event stream: not cached, and not buffered by nginx-style proxies.
pub(crate) fn event_stream<B>(body: B) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
