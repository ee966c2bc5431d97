//! Optional authentication: an HS256 JWT whose claim `tasks` lists the task ids it may read
//! and whose claim `write` lists those it may write through the JSON API (`["*"]`: all; a
//! token carries either or both, and `write` grants no reads), whose `exp` (Unix seconds) has
//! not passed and whose `nbf`, if any, has; with `--jwt-issuer` and `--jwt-audience`, its `iss`
//! and `aud` must match them.
//!
//! Browsers' EventSource cannot set headers, so the token is read from `Authorization: Bearer`
//! or from the token cookie (which `POST /session` sets, see [`crate::http::cookie`]). Never
//! from the URL: URLs end up in logs, histories and `Referer` headers. Tokens are never logged.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::http::cookie;

/// The `tasks` entry that grants every task.
const ALL_TASKS: &str = "*";

/// The last second a time claim may name, 9999-12-31T23:59:59Z: later is a mistake or an
/// attack, and would overflow time arithmetic.
const LATEST_TIME: f64 = 253_402_300_799.0;

/// The claims taskstream reads. The times are NumericDates (RFC 7519): seconds, possibly with
/// a fraction; any JSON number reads as an `f64` (even `u64::MAX`), so no value can overflow
/// here, and anything else fails to parse.
#[derive(Deserialize)]
struct Claims {
    tasks: Option<Vec<String>>,
    write: Option<Vec<String>>,
    exp: f64,
    nbf: Option<f64>,
}

/// Verifies tokens signed with the configured secret.
pub(crate) struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(HS256)")
    }
}

/// What a valid token allows.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The tasks it may read.
    scope: Scope,
    /// The tasks it may write.
    write: Scope,
    /// When the token stops being valid; a stream that uses it ends then.
    pub(crate) expires_at: SystemTime,
}

#[derive(Debug, Clone)]
enum Scope {
    All,
    Tasks(HashSet<String>),
}

/// Why a request was refused with `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No token in the header or the cookie.
    Missing,
    /// A token that does not verify, has expired, or lacks the claims (`exp`, and `tasks` or
    /// `write`).
    Invalid,
}

impl Auth {
    /// Verifies HS256 tokens signed with `secret`, from `issuer` and for `audience` when they
    /// are given (the claims are then required).
    pub(crate) fn new(secret: &[u8], issuer: Option<&str>, audience: Option<&str>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        // The time claims are checked by `valid_until`, which bounds them.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp"];
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Auth {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The grant of the request's token (the `Authorization` header first, then the cookie).
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<Grant, Denied> {
        let token = bearer_token(headers)
            .or_else(|| cookie::token(headers))
            .ok_or(Denied::Missing)?;
        self.verify(&token)
    }

    /// The grant of a token given by itself.
    pub(crate) fn verify(&self, token: &str) -> Result<Grant, Denied> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Denied::Invalid)?
            .claims;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let expires_at = valid_until(claims.exp, claims.nbf, now).ok_or(Denied::Invalid)?;
        if claims.tasks.is_none() && claims.write.is_none() {
            return Err(Denied::Invalid);
        }
        Ok(Grant {
            scope: Scope::of(claims.tasks),
            write: Scope::of(claims.write),
            expires_at,
        })
    }
}

impl Scope {
    /// The scope a claim lists (none when absent).
    fn of(claim: Option<Vec<String>>) -> Scope {
        let ids = claim.unwrap_or_default();
        if ids.iter().any(|t| t == ALL_TASKS) {
            Scope::All
        } else {
            Scope::Tasks(ids.into_iter().collect())
        }
    }

    fn covers(&self, task_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Tasks(tasks) => tasks.contains(task_id),
        }
    }
}

impl Grant {
    /// Whether the token may read `task_id`.
    pub(crate) fn covers(&self, task_id: &str) -> bool {
        self.scope.covers(task_id)
    }

    /// Whether the token may write `task_id` (its events, its title and status).
    pub(crate) fn may_write(&self, task_id: &str) -> bool {
        self.write.covers(task_id)
    }

    /// The task ids the token is limited to, `None` when it covers all.
    pub(crate) fn task_ids(&self) -> Option<Vec<String>> {
        match &self.scope {
            Scope::All => None,
            Scope::Tasks(tasks) => Some(tasks.iter().cloned().collect()),
        }
    }

    /// Time left until the token expires (zero once it has).
    pub(crate) fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// The token of an `Authorization: Bearer …` header (exactly one header, scheme in any case).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// When a token with these time claims stops being valid, if it is valid `now` (all in Unix
/// seconds): `None` on or after `exp` (RFC 7519: not accepted on or after it; streams end at
/// its start, so a reconnect then must be refused too), before `nbf`, or when either names a
/// time past [`LATEST_TIME`].
fn valid_until(exp: f64, nbf: Option<f64>, now: f64) -> Option<SystemTime> {
    let in_range = |time: f64| time.is_finite() && time <= LATEST_TIME;
    if !in_range(exp) || now >= exp {
        return None;
    }
    if let Some(nbf) = nbf
        && (!in_range(nbf) || now < nbf)
    {
        return None;
    }
    // `now < exp <= LATEST_TIME`, so `exp` is positive and in range.
    Some(UNIX_EPOCH + Duration::from_secs_f64(exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn time_claims_of_any_value_are_judged_without_overflow() {
        let now = 1_700_000_000.0;
        let expires = valid_until(now + 60.0, None, now).expect("valid");
        assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(1_700_000_060));
        assert_eq!(valid_until(now, None, now), None, "not on exp");
        assert_eq!(valid_until(now - 1.0, None, now), None);
        assert_eq!(valid_until(-1.0, None, now), None);
        assert!(valid_until(LATEST_TIME, None, now).is_some(), "9999-12-31");
        for far in [
            LATEST_TIME + 1.0,
            u64::MAX as f64,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ] {
            assert_eq!(valid_until(far, None, now), None, "exp {far}");
            assert_eq!(valid_until(now + 60.0, Some(far), now), None, "nbf {far}");
        }
        assert_eq!(
            valid_until(now + 60.0, Some(now + 1.0), now),
            None,
            "not yet"
        );
        assert!(
            valid_until(now + 60.0, Some(now), now).is_some(),
            "from nbf on"
        );
        assert!(valid_until(now + 60.0, Some(0.0), now).is_some());
    }

    #[test]
    fn reads_the_bearer_header_then_the_cookie() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer abc")])),
            Some("abc".into())
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc".into())
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
    }
}
