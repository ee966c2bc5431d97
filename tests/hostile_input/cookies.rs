//! The token cookie's attributes with and without TLS and `--cookie-secure`, with and without
//! cross-origin credentials, and `DELETE /session`.

use support::auth::{token, with_auth};
use support::http::Response;
use support::server::{TestServer, fast_config};
use support::tls::{self, certificate, cleanup};
use taskstream::Config;

/// A server with authentication on and `config`'s cookie settings, and a task `t`.
async fn server(config: Config) -> TestServer {
    let server = TestServer::start(with_auth(Config {
        cors_origins: vec!["https://app.example".to_owned()],
        ..config
    }))
    .await;
    server.task("t", "InProgress").await;
    server
}

/// Every `Set-Cookie` of `response`, each as its sorted attributes (name and value first).
fn set_cookies(response: &Response) -> Vec<Vec<String>> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            let text = value.to_str().expect("ASCII");
            let mut attributes: Vec<String> = text.split("; ").map(str::to_owned).collect();
            attributes[1..].sort_unstable();
            attributes.retain(|a| !a.starts_with("Max-Age=") && !a.starts_with("Expires="));
            attributes
        })
        .collect()
}

/// `POST /session` (and then `DELETE /session`) over a new connection to `server`, over TLS
/// when `certified` is given.
async fn session(
    server: &TestServer,
    certified: Option<&rcgen::CertifiedKey<rcgen::KeyPair>>,
    method: &str,
    bearer: &str,
) -> Response {
    let headers = [("authorization", bearer), ("origin", "https://app.example")];
    match certified {
        None => Response::request(method, server.addr(), "/session", &headers).await,
        Some(certified) => {
            let io = tls::connect(server.addr(), certified, "http/1.1").await;
            Response::exchange(io, method, "localhost", "/session", &headers)
                .await
                .expect("an answer over TLS")
        }
    }
}

/// Without TLS or `--cookie-secure` the cookie is plain and `SameSite=Lax`, even with
/// `--cors-credentials`: browsers drop a `SameSite=None` cookie that is not `Secure`.
#[tokio::test]
async fn without_secure_the_cookie_is_lax() {
    for cors_credentials in [false, true] {
        let server = server(Config {
            cors_credentials,
            ..fast_config()
        })
        .await;
        let good = token(&["t"], 60);
        let answer = session(&server, None, "POST", &format!("Bearer {good}")).await;
        assert_eq!(answer.status, 204);
        assert_eq!(
            set_cookies(&answer),
            [[
                format!("taskstream_token={good}"),
                "HttpOnly".to_owned(),
                "Path=/".to_owned(),
                "SameSite=Lax".to_owned()
            ]],
            "--cors-credentials {cors_credentials}"
        );
    }
}

/// Under TLS, or with `--cookie-secure` behind a TLS-terminating proxy, the cookie is
/// `Secure` and named `__Host-taskstream_token` (the plain one is expired); it is
/// `SameSite=None` only with `--cors-credentials`. The `__Host-` cookie opens a stream, and is
/// read before a plain one.
#[tokio::test]
async fn secure_cookies_have_the_host_prefix() {
    let (certified, files) = certificate("cookie-tls");
    for (tls, cors_credentials) in [(false, false), (false, true), (true, false), (true, true)] {
        let config = Config {
            cors_credentials,
            cookie_secure: !tls,
            tls: tls.then(|| files.clone()),
            ..fast_config()
        };
        let server = server(config).await;
        let good = token(&["t"], 60);
        let answer = session(
            &server,
            tls.then_some(&certified),
            "POST",
            &format!("Bearer {good}"),
        )
        .await;
        assert_eq!(answer.status, 204);
        let same_site = if cors_credentials { "None" } else { "Lax" };
        let cookies = set_cookies(&answer);
        let case = format!("TLS {tls}, --cors-credentials {cors_credentials}");
        assert_eq!(
            cookies[0],
            [
                format!("__Host-taskstream_token={good}"),
                "HttpOnly".to_owned(),
                "Path=/".to_owned(),
                format!("SameSite={same_site}"),
                "Secure".to_owned(),
            ],
            "{case}"
        );
        assert_eq!(
            cookies[1][0], "taskstream_token=",
            "{case}: the plain one expires"
        );
        if !tls {
            let both = format!("taskstream_token=stale; __Host-taskstream_token={good}");
            let mut sse = Response::get(
                server.addr(),
                "/tasks/t/events/stream",
                &[("cookie", &both)],
            )
            .await;
            assert_eq!(sse.status, 200, "{case}");
            assert!(sse.read_more().await);
        }
    }
    cleanup(&files);
}

/// `DELETE /session` expires the cookie under every name the server can reach, without
/// needing a valid token; with authentication off there is no session to end.
#[tokio::test]
async fn delete_session_clears_the_cookie() {
    for cookie_secure in [false, true] {
        let server = server(Config {
            cookie_secure,
            ..fast_config()
        })
        .await;
        let answer = session(&server, None, "DELETE", "Bearer expired-or-anything").await;
        assert_eq!(answer.status, 204);
        let values: Vec<String> = answer
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .collect();
        let mut names: Vec<&str> = values
            .iter()
            .map(|v| v.split_once('=').expect("a cookie").0)
            .collect();
        names.sort_unstable();
        let expected: &[&str] = if cookie_secure {
            &["__Host-taskstream_token", "taskstream_token"]
        } else {
            &["taskstream_token"]
        };
        assert_eq!(names, expected);
        for value in &values {
            assert!(
                value.contains("=; ") && value.contains("Max-Age=0"),
                "{value}"
            );
        }
    }
    let off = TestServer::start(fast_config()).await;
    let answer = Response::request("DELETE", off.addr(), "/session", &[]).await;
    assert_eq!(answer.status, 404);
    let wrong = Response::request("PUT", off.addr(), "/session", &[("content-length", "0")]).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST, DELETE"));
}
