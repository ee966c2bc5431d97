//! The cookie that carries the token for browsers, whose EventSource cannot set headers: set by
//! `POST /session`, removed by `DELETE /session`, read on every request without a bearer token.
//!
//! Its attributes are what a browser needs to send it back, and no more:
//! - `HttpOnly; Path=/`, always: no script reads it, every page and stream needs it.
//! - `Secure` under TLS, or with `--cookie-secure` behind a proxy that terminates TLS. A secure
//!   cookie is named [`HOST_NAME`] (`__Host-taskstream_token`): browsers accept that prefix
//!   only with `Secure`, `Path=/` and no `Domain`, so neither a sibling subdomain nor a
//!   plain-HTTP response can plant or replace it.
//! - `SameSite=None` only with cross-origin credentials (`--cors-credentials`) *and* `Secure`:
//!   browsers drop a `SameSite=None` cookie that is not `Secure`. `Lax` otherwise.
//!
//! Migrating between the two names: the reader takes both, [`HOST_NAME`] first, so a cookie set
//! before `Secure` was turned on keeps working until it expires; the next `POST /session` sets
//! the `__Host-` cookie and expires the plain one, and `DELETE /session` expires both. Turning
//! `Secure` off again leaves browsers with a `__Host-` cookie the server cannot replace over
//! plain HTTP; it is still read until it expires.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::COOKIE;

/// The token cookie's name when it is not `Secure`.
pub(crate) const PLAIN_NAME: &str = "taskstream_token";

/// The token cookie's name when it is `Secure`.
pub(crate) const HOST_NAME: &str = "__Host-taskstream_token";

/// How this server sets its token cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookiePolicy {
    /// `Secure` (and named [`HOST_NAME`]).
    secure: bool,
    /// `SameSite=None`: sent with cross-origin requests.
    cross_site: bool,
}

impl CookiePolicy {
    /// The policy of a server whose cookie is `secure` and that lets cross-origin requests
    /// carry credentials when `cors_credentials`.
    pub(crate) fn new(secure: bool, cors_credentials: bool) -> CookiePolicy {
        CookiePolicy {
            secure,
            cross_site: secure && cors_credentials,
        }
    }

    /// The `Set-Cookie` values that hand `token` to the browser for `max_age` (and, when
    /// secure, expire a plain cookie left from before).
    pub(crate) fn set(&self, token: &str, max_age: Duration) -> Vec<String> {
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let mut values = vec![
            self.cookie(self.name(), token)
                .max_age(cookie::time::Duration::seconds(seconds))
                .build()
                .to_string(),
        ];
        if self.secure {
            values.push(self.removal(PLAIN_NAME));
        }
        values
    }

    /// The `Set-Cookie` values that remove the token cookie, under each name this server can
    /// remove.
    pub(crate) fn clear(&self) -> Vec<String> {
        let mut values = vec![self.removal(PLAIN_NAME)];
        if self.secure {
            values.push(self.removal(HOST_NAME));
        }
        values
    }

    fn name(&self) -> &'static str {
        if self.secure { HOST_NAME } else { PLAIN_NAME }
    }

    fn cookie<'a>(&self, name: &'a str, value: &'a str) -> cookie::CookieBuilder<'a> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(if self.cross_site {
                SameSite::None
            } else {
                SameSite::Lax
            })
    }

    fn removal(&self, name: &str) -> String {
        let mut cookie = self.cookie(name, "").build();
        cookie.make_removal();
        cookie.to_string()
    }
}

/// The token in the request's cookies: the [`HOST_NAME`] cookie first, then the plain one.
pub(crate) fn token(headers: &HeaderMap) -> Option<String> {
    let mut plain = None;
    let cookies = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok);
    for cookie in cookies {
        if cookie.value().is_empty() {
            continue;
        }
        match cookie.name() {
            HOST_NAME => return Some(cookie.value().to_owned()),
            PLAIN_NAME if plain.is_none() => plain = Some(cookie.value().to_owned()),
            _ => {}
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn attributes(value: &str) -> Vec<&str> {
        let mut attributes: Vec<&str> = value.split("; ").collect();
        attributes[1..].sort_unstable();
        attributes
    }

    #[test]
    fn without_secure_the_cookie_is_plain_and_lax() {
        for cors_credentials in [false, true] {
            let set = CookiePolicy::new(false, cors_credentials).set("t0k", HOUR);
            assert_eq!(set.len(), 1);
            assert_eq!(
                attributes(&set[0]),
                [
                    "taskstream_token=t0k",
                    "HttpOnly",
                    "Max-Age=3600",
                    "Path=/",
                    "SameSite=Lax"
                ]
            );
        }
    }

    #[test]
    fn a_secure_cookie_has_the_host_prefix_and_retires_the_plain_one() {
        let set = CookiePolicy::new(true, false).set("t0k", HOUR);
        assert_eq!(
            attributes(&set[0]),
            [
                "__Host-taskstream_token=t0k",
                "HttpOnly",
                "Max-Age=3600",
                "Path=/",
                "SameSite=Lax",
                "Secure"
            ]
        );
        assert!(set[1].starts_with("taskstream_token=;"), "{}", set[1]);
        assert!(set[1].contains("Max-Age=0"), "{}", set[1]);
        let cross_site = CookiePolicy::new(true, true).set("t0k", HOUR);
        assert!(attributes(&cross_site[0]).contains(&"SameSite=None"));
    }

    #[test]
    fn clearing_expires_every_name_the_server_can_reach() {
        let plain = CookiePolicy::new(false, false).clear();
        assert_eq!(plain.len(), 1);
        assert!(plain[0].starts_with("taskstream_token=;") && plain[0].contains("Max-Age=0"));
        let secure = CookiePolicy::new(true, false).clear();
        assert!(
            secure
                .iter()
                .any(|c| c.starts_with("__Host-taskstream_token=;")
                    && c.contains("Secure")
                    && c.contains("Max-Age=0"))
        );
    }

    #[test]
    fn the_host_cookie_is_read_first() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(COOKIE, HeaderValue::from_str(value).expect("value"));
            }
            map
        };
        assert_eq!(
            token(&headers(&["a=1; taskstream_token=xyz; b=2"])),
            Some("xyz".into())
        );
        assert_eq!(
            token(&headers(&[
                "taskstream_token=old",
                "__Host-taskstream_token=new"
            ])),
            Some("new".into())
        );
        assert_eq!(token(&headers(&["taskstream_token="])), None);
        assert_eq!(token(&headers(&["other=1"])), None);
        assert_eq!(
            token(&headers(&[";;=;taskstream_token=ok"])),
            Some("ok".into())
        );
    }
}
