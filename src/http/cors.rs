//! Cross-origin reads and JSON API writes (CORS), off unless origins are configured: an
//! explicit allow-list, each allowed origin echoed back (never `*`), `vary: origin` on every
//! response so caches keep answers for different origins apart, and preflight `OPTIONS`
//! answered.

use std::collections::HashSet;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    HeaderValue, ORIGIN, VARY,
};
use http::{HeaderMap, Response, StatusCode};

use crate::http::response::{self, Body};

/// Request headers a cross-origin client may send: EventSource's own, a token, and the JSON
/// API's body type and idempotency key.
const ALLOWED_HEADERS: &str = "last-event-id, authorization, content-type, idempotency-key";

/// Methods a cross-origin client may use (`PUT` and `POST`: the JSON API's writes).
const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";

/// Response headers a cross-origin script may read besides the safelisted ones: when to retry,
/// and whether a write's answer was replayed for its idempotency key.
const EXPOSED_HEADERS: &str = "retry-after, idempotent-replayed";

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The CORS policy.
#[derive(Debug, Clone)]
pub(crate) struct Cors {
    origins: HashSet<String>,
    credentials: bool,
}

impl Cors {
    /// The policy for `origins` (`None` when there are none: CORS off).
    pub(crate) fn new(origins: &[String], credentials: bool) -> Option<Cors> {
        let origins: HashSet<String> = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        (!origins.is_empty()).then_some(Cors {
            origins,
            credentials,
        })
    }

    /// The request's `Origin` if it is allowed.
    fn allowed<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then_some(origin)
    }

    /// Adds the CORS headers a response to a request from `origin` (its `Origin` header)
    /// needs.
    pub(crate) fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        response.append(VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = self.allowed(origin) {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            if self.credentials {
                response.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }

    /// The answer to a preflight `OPTIONS`: `204` with what is allowed, or `403` for an origin
    /// that is not on the list. (`decorate` adds the origin headers afterwards.)
    pub(crate) fn preflight(&self, request: &HeaderMap) -> Response<Body> {
        if self.allowed(request.get(ORIGIN)).is_none() {
            return response::error(StatusCode::FORBIDDEN, "origin not allowed");
        }
        let mut answer = response::empty(StatusCode::NO_CONTENT);
        let headers = answer.headers_mut();
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        answer
    }
}
