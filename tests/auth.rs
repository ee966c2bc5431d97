//! Authentication (HS256 JWT in a header or a cookie, scoped to task ids) and CORS.

use jsonwebtoken::{EncodingKey, Header};
use support::auth::{token, with_auth};
use support::http::Response;
use support::ledger::contents;
use support::server::{TestServer, fast_config};
use taskstream::Config;
use taskstream::metrics::EndReason;

async fn auth_server() -> TestServer {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("mine", "InProgress").await;
    server.task("other", "InProgress").await;
    server.event("mine", "s1", "assistant", "hello").await;
    server
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Response {
    Response::get(server.addr(), path, headers).await
}

const STREAM: &str = "/tasks/mine/events/stream";

/// Without a token, or with a bad, tampered or expired one, a stream is `401` with a
/// `www-authenticate` challenge.
#[tokio::test]
async fn streams_need_a_valid_token() {
    let server = auth_server().await;
    let good = token(&["mine"], 60);
    let (head, rest) = good.split_once('.').expect("a JWT");
    let tampered_claims = format!(
        "{head}.{}",
        rest.replacen(
            &rest[..4],
            if &rest[..4] == "eyJ0" { "eyJ1" } else { "eyJ0" },
            1
        )
    );
    let mut tampered_signature = good.clone();
    let last = tampered_signature.pop().expect("non-empty");
    tampered_signature.push(if last == 'A' { 'B' } else { 'A' });
    let other_secret = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({ "tasks": ["mine"], "exp": u32::MAX }),
        &EncodingKey::from_secret(b"another secret"),
    )
    .expect("encode");

    let missing = get(&server, STREAM, &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="taskstream""#)
    );
    for bad in [
        "garbage",
        &tampered_claims,
        &tampered_signature,
        &other_secret,
        &token(&["mine"], -5),
    ] {
        let response = get(
            &server,
            STREAM,
            &[("authorization", &format!("Bearer {bad}"))],
        )
        .await;
        assert_eq!(response.status, 401, "token {bad}");
        assert!(
            response
                .header("www-authenticate")
                .expect("challenge")
                .contains("invalid_token")
        );
        assert!(response.json().await["error"].is_string());
    }
}

/// A token is accepted from the `Authorization` header and from the cookie, never from the URL.
#[tokio::test]
async fn tokens_come_from_the_header_or_the_cookie_only() {
    let server = auth_server().await;
    let good = token(&["mine"], 60);
    let mut by_header = get(
        &server,
        STREAM,
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(contents(&by_header.take(1).await), ["hello"]);
    let mut by_cookie = get(
        &server,
        STREAM,
        &[("cookie", &format!("theme=dark; taskstream_token={good}"))],
    )
    .await;
    assert_eq!(contents(&by_cookie.take(1).await), ["hello"]);
    for query in ["token", "access_token", "taskstream_token", "jwt"] {
        let response = get(&server, &format!("{STREAM}?{query}={good}"), &[]).await;
        assert_eq!(response.status, 401, "?{query}=");
    }
}

/// A valid token for other tasks gets `403`; `["*"]` covers every task.
#[tokio::test]
async fn a_token_covers_only_its_tasks() {
    let server = auth_server().await;
    let mine = token(&["mine"], 60);
    let forbidden = get(
        &server,
        "/tasks/other/events/stream",
        &[("authorization", &format!("Bearer {mine}"))],
    )
    .await;
    assert_eq!(forbidden.status, 403);
    let unknown = get(
        &server,
        "/tasks/nope/events/stream",
        &[("authorization", &format!("Bearer {mine}"))],
    )
    .await;
    assert_eq!(
        unknown.status, 403,
        "a token does not reveal which tasks exist"
    );

    let all = token(&["*"], 60);
    for task in ["mine", "other"] {
        let response = get(
            &server,
            &format!("/tasks/{task}/events/stream"),
            &[("authorization", &format!("Bearer {all}"))],
        )
        .await;
        assert_eq!(response.status, 200, "{task}");
    }
}

/// `/healthz` and `/readyz` stay open; `/metrics` needs a token.
#[tokio::test]
async fn health_is_open_and_metrics_need_a_token() {
    let server = auth_server().await;
    assert_eq!(get(&server, "/healthz", &[]).await.status, 200);
    assert_eq!(get(&server, "/readyz", &[]).await.status, 200);
    assert_eq!(get(&server, "/metrics", &[]).await.status, 401);
    let any = token(&["mine"], 60);
    assert_eq!(
        get(
            &server,
            "/metrics",
            &[("authorization", &format!("Bearer {any}"))]
        )
        .await
        .status,
        200
    );
}

/// `POST /session` with a valid bearer token sets the `taskstream_token` cookie (HttpOnly,
/// Path=/, SameSite=Lax, expiring with the token), which then opens the stream.
#[tokio::test]
async fn post_session_sets_the_token_cookie() {
    let server = auth_server().await;
    let good = token(&["mine"], 120);
    let refused = Response::request(
        "POST",
        server.addr(),
        "/session",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(refused.status, 401);
    let answer = Response::request(
        "POST",
        server.addr(),
        "/session",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(answer.status, 204);
    let cookie = answer.header("set-cookie").expect("a cookie").to_owned();
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert_eq!(attributes[0], format!("taskstream_token={good}"));
    for expected in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&expected), "{cookie}");
    }
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("seconds");
    assert!((100..=120).contains(&max_age), "{cookie}");

    let mut sse = get(&server, STREAM, &[("cookie", attributes[0])]).await;
    assert_eq!(contents(&sse.take(1).await), ["hello"]);
}

/// A stream ends when its token expires (no `complete`), and the token then gets `401`.
#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let server = auth_server().await;
    let short = token(&["mine"], 2);
    let header = format!("Bearer {short}");
    let mut sse = get(&server, STREAM, &[("authorization", &header)]).await;
    assert_eq!(contents(&sse.take(1).await), ["hello"]);
    assert!(sse.ends().await, "the stream ends by itself");
    assert_eq!(
        server
            .handle
            .metrics()
            .stream_end_count(EndReason::TokenExpired),
        1
    );
    assert_eq!(
        get(&server, STREAM, &[("authorization", &header)])
            .await
            .status,
        401
    );
}

async fn cors_server(credentials: bool) -> TestServer {
    let config = Config {
        cors_origins: vec!["https://app.example".to_owned()],
        cors_credentials: credentials,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server
}

/// With CORS off (the default) no CORS header is sent and `OPTIONS` is not allowed.
#[tokio::test]
async fn cors_is_off_by_default() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let response = get(
        &server,
        "/tasks/t/events/stream",
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(response.header("access-control-allow-origin").is_none());
    let preflight = Response::request(
        "OPTIONS",
        server.addr(),
        "/tasks/t/events/stream",
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(preflight.status, 405);
}

/// An allowed origin is echoed (never `*`) with `vary: origin`; another origin gets no allow
/// header; preflights are answered for allowed origins only and allow `last-event-id` and
/// `authorization`.
#[tokio::test]
async fn cors_echoes_allowed_origins_only() {
    let server = cors_server(false).await;
    let path = "/tasks/t/events/stream";
    let allowed = get(&server, path, &[("origin", "https://app.example")]).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(allowed.header("vary"), Some("origin"));
    assert!(allowed.header("access-control-allow-credentials").is_none());

    let other = get(&server, path, &[("origin", "https://evil.example")]).await;
    assert!(other.header("access-control-allow-origin").is_none());
    assert_eq!(other.header("vary"), Some("origin"));

    let preflight = Response::request(
        "OPTIONS",
        server.addr(),
        path,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-headers", "last-event-id"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let allowed_headers = preflight
        .header("access-control-allow-headers")
        .expect("allowed headers");
    assert!(allowed_headers.contains("last-event-id") && allowed_headers.contains("authorization"));

    let refused = Response::request(
        "OPTIONS",
        server.addr(),
        path,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(refused.header("access-control-allow-origin").is_none());
}

/// `--cors-credentials` adds `access-control-allow-credentials: true`. Without TLS (or
/// `--cookie-secure`) the session cookie stays `SameSite=Lax`: browsers drop a `SameSite=None`
/// cookie that is not `Secure` (`hostile_input`'s cookie tests cover the secure cases).
#[tokio::test]
async fn cors_credentials_allow_the_cookie_cross_origin() {
    let config = Config {
        cors_origins: vec!["https://app.example".to_owned()],
        cors_credentials: true,
        ..with_auth(fast_config())
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    let good = token(&["t"], 60);
    let response = get(
        &server,
        "/tasks/t/events/stream",
        &[
            ("origin", "https://app.example"),
            ("authorization", &format!("Bearer {good}")),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    let session = Response::request(
        "POST",
        server.addr(),
        "/session",
        &[
            ("origin", "https://app.example"),
            ("authorization", &format!("Bearer {good}")),
        ],
    )
    .await;
    let cookie = session.header("set-cookie").expect("cookie");
    assert!(
        cookie.contains("SameSite=Lax") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

/// Tokens past their `exp` by even a second are refused (no leeway).
#[tokio::test]
async fn there_is_no_leeway_on_expiry() {
    let server = auth_server().await;
    let response = get(
        &server,
        STREAM,
        &[("authorization", &format!("Bearer {}", token(&["mine"], -1)))],
    )
    .await;
    assert_eq!(response.status, 401);
}
