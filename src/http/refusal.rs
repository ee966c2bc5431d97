//! The answers that refuse a request, shared by every endpoint: who the request's token is
//! ([`authorize`], `401`), a failed query by who is to blame ([`database_failed`]), and
//! answers with `retry-after` ([`unavailable`], [`retry_later`]).

use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

use crate::app::App;
use crate::db::{Cause, DbError};
use crate::http::auth::{Denied, Grant};
use crate::http::response::{self, Body};

/// Seconds a client is told to wait (`retry-after`) when the server is full or the database is
/// down.
const RETRY_AFTER_SECONDS: &str = "2";

/// The request's grant: `Ok(None)` when authentication is off.
pub(crate) fn authorize(app: &App, headers: &HeaderMap) -> Result<Option<Grant>, Denied> {
    match &app.auth {
        None => Ok(None),
        Some(auth) => auth.authorize(headers).map(Some),
    }
}

/// `401` with the `www-authenticate` challenge, for programs.
pub(crate) fn unauthorized(denied: Denied) -> Response<Body> {
    let mut answer = response::error(StatusCode::UNAUTHORIZED, denied_message(denied));
    challenge(&mut answer, denied);
    answer
}

pub(crate) fn denied_message(denied: Denied) -> &'static str {
    match denied {
        Denied::Missing => "a token is required",
        Denied::Invalid => "the token is invalid or expired",
    }
}

/// The `www-authenticate` challenge of RFC 6750.
pub(crate) fn challenge(answer: &mut Response<Body>, denied: Denied) {
    let challenge = match denied {
        Denied::Missing => r#"Bearer realm="taskstream""#,
        Denied::Invalid => r#"Bearer realm="taskstream", error="invalid_token""#,
    };
    answer
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
}

/// The answer to a failed query, by who is to blame (see [`Cause`]): `400` for the request's
/// data, `503` with `retry-after` for a database that is unavailable, `500` otherwise. Logged
/// at the level each deserves: a client's mistake is no operator's concern.
pub(crate) fn database_failed(error: &DbError, doing: &str) -> Response<Body> {
    match error.cause() {
        Cause::Request => {
            tracing::debug!(%error, "{doing}: refused data");
            response::error(
                StatusCode::BAD_REQUEST,
                "the database refused this request's data",
            )
        }
        Cause::Unavailable => {
            tracing::warn!(%error, "{doing}");
            unavailable("database unavailable")
        }
        Cause::Server => {
            tracing::error!(%error, "{doing}");
            response::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `503` with a `retry-after` hint.
pub(crate) fn unavailable(message: &str) -> Response<Body> {
    retry_later(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// `status` with a `retry-after` hint: the request may succeed as it is, a little later.
pub(crate) fn retry_later(status: StatusCode, message: &str) -> Response<Body> {
    let mut answer = response::error(status, message);
    answer
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    answer
}
