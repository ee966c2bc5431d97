//! Token edges: time claims of any value and type, `nbf`, issuer and audience, and secrets too
//! weak to start with. (What a token that does not cover a task may learn of it through the
//! task list's `?before=` is in `tests/viewer.rs`.)

use support::auth::{SECRET, now, sign, token, with_auth};
use support::http::Response;
use support::server::{TestServer, fast_config};
use taskstream::Config;
use taskstream::config::Secret;

const STREAM: &str = "/tasks/t/events/stream";

async fn auth_server(config: Config) -> TestServer {
    let server = TestServer::start(with_auth(config)).await;
    server.task("t", "InProgress").await;
    server
}

/// The status of the stream of `t` with `token` as bearer.
async fn status_with(server: &TestServer, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    let response = Response::get(server.addr(), STREAM, &[("authorization", &bearer)]).await;
    let status = response.status.as_u16();
    if status != 200 {
        assert!(response.json().await["error"].is_string(), "a JSON error");
    }
    status
}

/// `exp` and `nbf` of any value never panic or drop the connection: past the year 9999, or
/// not a number at all, they get `401`; a fractional or far (but possible) time is fine.
#[tokio::test]
async fn time_claims_of_any_value_get_an_answer() {
    let server = auth_server(fast_config()).await;
    let soon = now() + 60;
    let year_10000 = 253_402_300_800_i64;
    // Each value as `exp`, then as `nbf` (with a valid `exp`): what the `nbf` case gets. A
    // time before 1970 is a valid `nbf` (long past), and a null one is no `nbf` at all.
    let cases = [
        (serde_json::json!(u64::MAX), 401),
        (serde_json::json!(i64::MIN), 200),
        (serde_json::json!(1e300), 401),
        (serde_json::json!(year_10000), 401),
        (serde_json::json!(-1), 200),
        (serde_json::json!("tomorrow"), 401),
        (serde_json::json!(null), 200),
        (serde_json::json!(true), 401),
        (serde_json::json!([soon]), 401),
        (serde_json::json!({ "at": soon }), 401),
    ];
    for (value, as_nbf) in &cases {
        let claims = serde_json::json!({ "tasks": ["t"], "exp": value });
        assert_eq!(
            status_with(&server, &sign(&claims)).await,
            401,
            "exp {value}"
        );
        let claims = serde_json::json!({ "tasks": ["t"], "exp": soon, "nbf": value });
        assert_eq!(
            status_with(&server, &sign(&claims)).await,
            *as_nbf,
            "nbf {value}"
        );
    }
    for exp in [
        serde_json::json!(soon as f64 + 0.5),
        serde_json::json!(year_10000 - 1),
    ] {
        let claims = serde_json::json!({ "tasks": ["t"], "exp": exp });
        assert_eq!(status_with(&server, &sign(&claims)).await, 200, "exp {exp}");
    }
    let missing = serde_json::json!({ "tasks": ["t"] });
    assert_eq!(status_with(&server, &sign(&missing)).await, 401);
}

/// A token is not accepted before its `nbf`, and is from then on.
#[tokio::test]
async fn not_before_is_honoured() {
    let server = auth_server(fast_config()).await;
    let early = serde_json::json!({ "tasks": ["t"], "exp": now() + 120, "nbf": now() + 60 });
    assert_eq!(status_with(&server, &sign(&early)).await, 401);
    let due = serde_json::json!({ "tasks": ["t"], "exp": now() + 120, "nbf": now() - 1 });
    assert_eq!(status_with(&server, &sign(&due)).await, 200);
    let session = Response::request(
        "POST",
        server.addr(),
        "/session",
        &[("authorization", &format!("Bearer {}", sign(&early)))],
    )
    .await;
    assert_eq!(session.status, 401, "no cookie for a token not valid yet");
}

/// With `--jwt-issuer` and `--jwt-audience`, a token must name both; without them, neither is
/// checked.
#[tokio::test]
async fn issuer_and_audience_are_checked_when_set() {
    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "taskstream";
    let server = auth_server(Config {
        jwt_issuer: Some(ISSUER.to_owned()),
        jwt_audience: Some(AUDIENCE.to_owned()),
        ..fast_config()
    })
    .await;
    let exp = now() + 60;
    let cases = [
        (serde_json::json!({ "tasks": ["t"], "exp": exp }), 401),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "iss": ISSUER }),
            401,
        ),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "aud": AUDIENCE }),
            401,
        ),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "iss": "https://evil.example", "aud": AUDIENCE }),
            401,
        ),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "iss": ISSUER, "aud": "other" }),
            401,
        ),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "iss": ISSUER, "aud": AUDIENCE }),
            200,
        ),
        (
            serde_json::json!({ "tasks": ["t"], "exp": exp, "iss": ISSUER, "aud": ["other", AUDIENCE] }),
            200,
        ),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            status_with(&server, &sign(&claims)).await,
            expected,
            "{claims}"
        );
    }
    let plain = auth_server(fast_config()).await;
    assert_eq!(status_with(&plain, &token(&["t"], 60)).await, 200);
}

/// A secret shorter than 32 bytes, or an empty one (an unset template variable), refuses to
/// start, through the library and through the binary; a secret file is read.
#[tokio::test]
async fn weak_secrets_refuse_to_start_and_files_are_read() {
    let listen = "127.0.0.1:0".parse().expect("address");
    let url = support::cluster::fresh_database().await;
    for secret in ["", "31-bytes-are-one-byte-too-few!!"] {
        let config = Config {
            jwt_secret: Some(Secret(secret.as_bytes().to_vec())),
            ..fast_config()
        };
        let error = taskstream::start(config, &url, listen)
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("--jwt-secret"), "{error}");
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskstream"))
        .args(["--listen", "127.0.0.1:0", "--database-url", &url])
        .env("TASKSTREAM_JWT_SECRET", "")
        .output()
        .await
        .expect("run taskstream");
    assert!(!output.status.success(), "an empty secret does not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is empty"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("ts-secret-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).expect("write the secret");
    let server = TestServer::start_on(
        Config {
            jwt_secret_file: Some(file),
            ..fast_config()
        },
        url,
    )
    .await;
    std::fs::remove_dir_all(&dir).expect("clean up");
    server.task("t", "InProgress").await;
    assert_eq!(status_with(&server, &token(&["t"], 60)).await, 200);
    assert_eq!(Response::get(server.addr(), STREAM, &[]).await.status, 401);
}
