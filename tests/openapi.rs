//! Real responses of every API endpoint validate against the schemas of the OpenAPI document
//! the server itself serves (`GET /openapi.json`), with the `jsonschema` crate (OpenAPI 3.1
//! schemas are JSON Schema 2020-12). That the document names exactly the router's routes is
//! proven by the unit tests of `src/api/openapi.rs`.

use serde_json::{Value, json};
use support::auth::with_auth;
use support::http::Response;
use support::server::{TestServer, fast_config};

/// The document as the server serves it.
async fn document(server: &TestServer) -> Value {
    let response = Response::get(server.addr(), "/openapi.json", &[]).await;
    assert_eq!(response.status, 200);
    response.json().await
}

/// Follows a local `$ref` of the document.
fn resolved<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(pointer) => document
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{pointer} resolves")),
        None => value,
    }
}

/// Checks `response` against what the document says `method template` answers with its
/// status: the status must be documented, and a JSON body must validate against its schema.
async fn check(document: &Value, method: &str, template: &str, response: Response) -> Value {
    let status = response.status.as_u16().to_string();
    let operation = &document["paths"][template][method];
    assert!(operation.is_object(), "{method} {template} is documented");
    let documented = resolved(document, &operation["responses"][&status]);
    assert!(
        documented.is_object(),
        "{method} {template} answered {status}, which the document does not list"
    );
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let Some(schema) = documented["content"]["application/json"]["schema"]
        .as_object()
        .cloned()
    else {
        if let Some(content) = documented["content"].as_object() {
            let essence = content_type.split(';').next().unwrap_or("");
            assert!(
                content.contains_key(essence),
                "{method} {template} {status}: {content_type} is not documented"
            );
        }
        return Value::Null;
    };
    assert_eq!(
        content_type, "application/json",
        "{method} {template} {status}"
    );
    let body = response.json().await;
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        "allOf": [Value::Object(schema)],
    });
    let validator = jsonschema::draft202012::new(&root).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: {body} does not validate: {errors:?}"
    );
    body
}

async fn send(server: &TestServer, method: &str, path: &str, body: Option<&Value>) -> Response {
    match body {
        Some(body) => Response::json_request(method, server.addr(), path, &[], body).await,
        None => Response::request(method, server.addr(), path, &[]).await,
    }
}

/// Every endpoint, in its answers that carry bodies: successes and refusals.
#[tokio::test]
async fn real_responses_validate_against_the_document() {
    let server = TestServer::start(fast_config()).await;
    let doc = document(&server).await;
    let event = json!({ "session": "s1", "type": "toolcall", "content": { "tool": "f" } });
    let cases: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("get", "/healthz", "/healthz".into(), None),
        ("get", "/readyz", "/readyz".into(), None),
        ("get", "/metrics", "/metrics".into(), None),
        ("get", "/openapi.json", "/openapi.json".into(), None),
        ("delete", "/session", "/session".into(), None),
        ("post", "/session", "/session".into(), None),
        (
            "put",
            "/tasks/{id}",
            "/tasks/t".into(),
            Some(json!({ "title": "T", "status": "InProgress" })),
        ),
        (
            "put",
            "/tasks/{id}",
            "/tasks/t".into(),
            Some(json!({ "title": "T2" })),
        ),
        (
            "put",
            "/tasks/{id}",
            "/tasks/t".into(),
            Some(json!({ "colour": "red" })),
        ),
        ("get", "/tasks/{id}", "/tasks/t".into(), None),
        ("get", "/tasks/{id}", "/tasks/missing".into(), None),
        ("get", "/tasks", "/tasks?limit=1".into(), None),
        ("get", "/tasks", "/tasks?limit=x".into(), None),
        (
            "post",
            "/tasks/{id}/events",
            "/tasks/t/events".into(),
            Some(event.clone()),
        ),
        (
            "post",
            "/tasks/{id}/events",
            "/tasks/t/events".into(),
            Some(json!([event, event])),
        ),
        (
            "post",
            "/tasks/{id}/events",
            "/tasks/missing/events".into(),
            Some(json!({ "session": "z", "type": "a" })),
        ),
        (
            "post",
            "/tasks/{id}/events",
            "/tasks/t/events".into(),
            Some(json!({ "type": "a" })),
        ),
        ("get", "/tasks/{id}/events", "/tasks/t/events".into(), None),
        (
            "get",
            "/tasks/{id}/events",
            "/tasks/t/events?after=bad".into(),
            None,
        ),
        (
            "get",
            "/tasks/{id}/events",
            "/tasks/missing/events".into(),
            None,
        ),
        ("get", "/tasks/{id}", "/tasks/t".into(), None),
    ];
    for (method, template, path, body) in cases {
        let response = send(&server, &method.to_ascii_uppercase(), &path, body.as_ref()).await;
        check(&doc, method, template, response).await;
    }
    // The task now has a session: its JSON shows it.
    let task = check(
        &doc,
        "get",
        "/tasks/{id}",
        send(&server, "GET", "/tasks/t", None).await,
    )
    .await;
    assert_eq!(task["session"]["last_seq"], 3);
    let page = check(
        &doc,
        "get",
        "/tasks/{id}/events",
        send(&server, "GET", "/tasks/t/events?limit=2", None).await,
    )
    .await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2));
    // The stream: its headers and content type as documented.
    let stream = send(&server, "GET", "/tasks/t/events/stream", None).await;
    check(&doc, "get", "/tasks/{id}/events/stream", stream).await;
    let stream = send(&server, "GET", "/tasks/missing/events/stream", None).await;
    check(&doc, "get", "/tasks/{id}/events/stream", stream).await;
    // Idempotency refusals.
    let keyed = |content: &str| {
        let body = json!({ "session": "s1", "type": "a", "content": content });
        let addr = server.addr();
        async move {
            Response::json_request(
                "POST",
                addr,
                "/tasks/t/events",
                &[("idempotency-key", "k")],
                &body,
            )
            .await
        }
    };
    check(&doc, "post", "/tasks/{id}/events", keyed("a").await).await;
    check(&doc, "post", "/tasks/{id}/events", keyed("a").await).await;
    check(&doc, "post", "/tasks/{id}/events", keyed("b").await).await;
    let foreign = json!({ "session": "s1", "type": "a" });
    server.task("u", "InProgress").await;
    check(
        &doc,
        "post",
        "/tasks/{id}/events",
        send(&server, "POST", "/tasks/u/events", Some(&foreign)).await,
    )
    .await;
    let text = Response::send(
        "POST",
        server.addr(),
        "/tasks/t/events",
        &[("content-type", "text/plain")],
        "x",
    )
    .await;
    check(&doc, "post", "/tasks/{id}/events", text).await;
}

/// With authentication on: `401` (a documented shared response) and `403`, and `/session`.
#[tokio::test]
async fn refusals_of_authentication_validate_too() {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("t", "InProgress").await;
    let doc = document(&server).await;
    for (method, template, path) in [
        ("get", "/tasks/{id}", "/tasks/t"),
        ("get", "/tasks", "/tasks"),
        ("get", "/tasks/{id}/events", "/tasks/t/events"),
        ("get", "/tasks/{id}/events/stream", "/tasks/t/events/stream"),
        ("get", "/metrics", "/metrics"),
        ("post", "/session", "/session"),
    ] {
        let response = send(&server, &method.to_ascii_uppercase(), path, None).await;
        assert_eq!(response.status, 401, "{path}");
        check(&doc, method, template, response).await;
    }
    let reader = support::auth::token(&["t"], 60);
    let forbidden = Response::json_request(
        "PUT",
        server.addr(),
        "/tasks/t",
        &[("authorization", &format!("Bearer {reader}"))],
        &json!({}),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    check(&doc, "put", "/tasks/{id}", forbidden).await;
}
