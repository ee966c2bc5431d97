//! Who may write through the JSON API, decided once per request: a token whose `write` claim
//! covers the task (authentication on), or anyone when authentication is off and the server
//! listens on loopback or was told `--allow-anonymous-writes`; and only while the server's own
//! login holds the rights the writes need (checked at start). Who may read one task
//! ([`may_read`]: a token whose `tasks` claim covers it, or anyone when authentication is off)
//! is decided here too, for the JSON reads and the task's stream.

use http::{HeaderMap, Response, StatusCode};

use crate::app::App;
use crate::http::auth::Grant;
use crate::http::refusal::{authorize, unauthorized, unavailable};
use crate::http::response::{self, Body};

/// What the server decided at start about writes.
#[derive(Debug, Clone)]
pub(crate) struct WriteGate {
    /// Whether a request without a token may write while authentication is off.
    pub(crate) anonymous: bool,
    /// Why writes are refused with `503` (the login lacks rights), `None` when they are not.
    pub(crate) refused: Option<String>,
}

/// The grant of a request that may read `task_id` (`None` when authentication is off), or the
/// answer refusing it (`401`, `403`).
pub(crate) fn may_read(
    app: &App,
    headers: &HeaderMap,
    task_id: &str,
) -> Result<Option<Grant>, Box<Response<Body>>> {
    match authorize(app, headers) {
        Ok(Some(grant)) if !grant.covers(task_id) => Err(Box::new(response::error(
            StatusCode::FORBIDDEN,
            "the token does not cover this task",
        ))),
        Ok(grant) => Ok(grant),
        Err(denied) => Err(Box::new(unauthorized(denied))),
    }
}

/// The refusal of a request that may not write `task_id` (`401`, `403`), or of any write when
/// the server cannot (`503`); `None`: it may.
pub(crate) fn may_write(app: &App, headers: &HeaderMap, task_id: &str) -> Option<Response<Body>> {
    match authorize(app, headers) {
        Ok(Some(grant)) if !grant.may_write(task_id) => {
            return Some(response::error(
                StatusCode::FORBIDDEN,
                "the token's write claim does not cover this task",
            ));
        }
        Ok(Some(_)) => {}
        Ok(None) if !app.writes.anonymous => {
            return Some(response::error(
                StatusCode::FORBIDDEN,
                "anonymous writes are off on a non-loopback address: turn authentication on \
                 (--jwt-secret) or allow them with --allow-anonymous-writes",
            ));
        }
        Ok(None) => {}
        Err(denied) => return Some(unauthorized(denied)),
    }
    if let Some(reason) = &app.writes.refused {
        return Some(unavailable(reason));
    }
    None
}
