//! Optional authentication: an HS256 JWT whose claim `tasks` lists the task ids it may read
//! (`["*"]`: all) and whose `exp` (Unix seconds) has not passed.
//!
//! Browsers' EventSource cannot set headers, so the token is read from `Authorization: Bearer`
//! or from the cookie `taskstream_token` (which `POST /session` sets). Never from the URL: URLs
//! end up in logs, histories and `Referer` headers. Tokens are never logged.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The cookie that carries the token for browsers.
pub(crate) const TOKEN_COOKIE: &str = "taskstream_token";

/// The `tasks` entry that grants every task.
const ALL_TASKS: &str = "*";

/// The claims taskstream reads.
#[derive(Deserialize)]
struct Claims {
    tasks: Vec<String>,
    exp: u64,
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
    scope: Scope,
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
    /// A token that does not verify, has expired, or lacks the claims.
    Invalid,
}

impl Auth {
    /// Verifies HS256 tokens signed with `secret`, with no leeway on `exp`.
    pub(crate) fn new(secret: &str) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Auth {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// The grant of the request's token (the `Authorization` header first, then the cookie).
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<Grant, Denied> {
        let token = bearer_token(headers)
            .or_else(|| cookie_token(headers))
            .ok_or(Denied::Missing)?;
        self.verify(&token)
    }

    /// The grant of a token given by itself.
    pub(crate) fn verify(&self, token: &str) -> Result<Grant, Denied> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Denied::Invalid)?
            .claims;
        let expires_at = UNIX_EPOCH + Duration::from_secs(claims.exp);
        // RFC 7519: not accepted *on or after* `exp` (the crate accepts the whole second of
        // `exp`; streams end at its start, so a reconnect then must be refused too).
        if SystemTime::now() >= expires_at {
            return Err(Denied::Invalid);
        }
        let scope = if claims.tasks.iter().any(|t| t == ALL_TASKS) {
            Scope::All
        } else {
            Scope::Tasks(claims.tasks.into_iter().collect())
        };
        Ok(Grant { scope, expires_at })
    }
}

impl Grant {
    /// Whether the token may read `task_id`.
    pub(crate) fn covers(&self, task_id: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Tasks(tasks) => tasks.contains(task_id),
        }
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

/// The token in the `taskstream_token` cookie, if any `Cookie` header has it.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == TOKEN_COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
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
        assert_eq!(
            cookie_token(&headers(&[("cookie", "a=1; taskstream_token=xyz; b=2")])),
            Some("xyz".into())
        );
        assert_eq!(
            cookie_token(&headers(&[("cookie", "taskstream_token=")])),
            None
        );
    }
}
