//! The viewer's pages and files over a real socket: the task list at `/` (newest first, capped,
//! paged, escaped), the task page, the embedded assets and their caching headers. What the
//! page's script does in a browser is proven by `tests/e2e_browser.rs` (`--features e2e`).

use std::sync::Arc;

use support::auth::{token, with_auth};
use support::http::Response;
use support::server::{TestServer, fast_config};
use taskstream::db::{Db, TaskListing};
use taskstream::http::request::MAX_PAGE_SIZE;
use taskstream::metrics::Metrics;

const HOSTILE: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;

/// What a browser sends as `Accept` for a page: `GET /tasks/{id}` serves the viewer's page to
/// it, and JSON to programs.
const BROWSER: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

/// `GET path` on `server`, as a browser asks for a page.
async fn get(server: &TestServer, path: &str) -> Response {
    Response::get(server.addr(), path, &[BROWSER]).await
}

/// Inserts `n` tasks `t000` … in one statement, so they share one `created_at`.
async fn many_tasks(server: &TestServer, n: i32) {
    server
        .db
        .execute(
            "INSERT INTO tasks (id, title, status)
             SELECT format('t%s', lpad(i::text, 3, '0')), format('Task %s', i), 'Open'
             FROM generate_series(0, $1 - 1) AS i",
            &[&n],
        )
        .await
        .expect("insert tasks");
}

/// The task ids linked from a task list page, in page order.
fn linked_ids(html: &str) -> Vec<String> {
    html.split("<a href=\"/tasks/")
        .skip(1)
        .map(|rest| rest[..rest.find('"').expect("closing quote")].to_owned())
        .collect()
}

/// The "Older tasks" link of a task list page, if any.
fn older_link(html: &str) -> Option<String> {
    let rest = &html[html.find("class=\"older\" href=\"")? + 20..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// `/` lists tasks newest first, each with its title, status and a link to its page.
#[tokio::test]
async fn the_index_lists_tasks_newest_first_with_links() {
    let server = TestServer::start(fast_config()).await;
    server.task("old", "Done").await;
    server.task("new", "InProgress").await;
    let page = get(&server, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page
        .header("content-security-policy")
        .expect("CSP")
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await;
    assert_eq!(linked_ids(&html), ["new", "old"]);
    assert!(html.contains(r#"<span class="title">task new</span>"#));
    assert!(html.contains(r#"data-status="InProgress">InProgress</span>"#));
    assert!(html.contains(r#"data-status="Done">Done</span>"#));
    assert_eq!(older_link(&html), None);
}

/// A task list never shows more than `limit` (capped at `MAX_PAGE_SIZE`) tasks, and following
/// the "older" links visits every task exactly once, even when they share one `created_at`.
#[tokio::test]
async fn the_index_is_capped_and_pages_through_every_task_once() {
    let server = TestServer::start(fast_config()).await;
    many_tasks(&server, MAX_PAGE_SIZE as i32 + 5).await;

    let html = get(&server, "/?limit=100000").await.text().await;
    assert_eq!(linked_ids(&html).len(), MAX_PAGE_SIZE as usize);
    assert!(older_link(&html).is_some());

    let mut seen = Vec::new();
    let mut next = Some("/?limit=60".to_owned());
    while let Some(path) = next {
        let html = get(&server, &path).await.text().await;
        let ids = linked_ids(&html);
        assert!(ids.len() <= 60, "page of {}", ids.len());
        seen.extend(ids);
        next = older_link(&html);
    }
    let expected: Vec<String> = (0..MAX_PAGE_SIZE + 5).map(|i| format!("t{i:03}")).collect();
    assert_eq!(seen, expected, "every task once, ties in id order");
}

/// A malformed `limit` or `before` is a `400` with a JSON error, not a page.
#[tokio::test]
async fn a_malformed_page_request_is_a_400() {
    let server = TestServer::start(fast_config()).await;
    for path in [
        "/?limit=0",
        "/?limit=many",
        "/?before=%zz",
        "/?limit=1&limit=2",
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status, 400, "{path}");
        assert!(response.json().await["error"].is_string(), "{path}");
    }
}

/// Titles, ids and statuses are escaped on the list and on the task page: markup in them
/// shows as text.
#[tokio::test]
async fn pages_escape_what_the_database_holds() {
    let server = TestServer::start(fast_config()).await;
    server
        .db
        .execute(
            "INSERT INTO tasks (id, title, status) VALUES ($1, $1, $1)",
            &[&HOSTILE],
        )
        .await
        .expect("insert task");
    let index = get(&server, "/").await.text().await;
    let encoded = taskstream::viewer::percent_encode(HOSTILE);
    let page = get(&server, &format!("/tasks/{encoded}"))
        .await
        .text()
        .await;
    for html in [&index, &page] {
        assert!(!html.contains("<script>window"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
            "{html}"
        );
    }
    assert!(page.contains(&format!(r#"href="/tasks/{encoded}/events/stream""#)));
}

/// `/tasks/{id}` is the live page of an existing task; an unknown task is a JSON `404`, a
/// malformed id a `400`, and other methods a `405`.
#[tokio::test]
async fn the_task_page_exists_only_for_tasks() {
    let server = TestServer::start(fast_config()).await;
    server.task("a b", "InProgress").await;
    let page = get(&server, "/tasks/a%20b").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").is_some());
    let html = page.text().await;
    assert!(html.contains(r#"<script type="module" src="/assets/viewer.js"></script>"#));
    assert!(html.contains(r#"data-task="a b""#));
    assert!(html.contains(r#"href="/tasks/a%20b/events/stream""#));
    assert!(!html.contains("<script>"), "no inline script");

    let missing = get(&server, "/tasks/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json().await["error"], "no such task");
    assert_eq!(get(&server, "/tasks/%ff").await.status, 400);
    for (path, allow) in [
        ("/", "GET"),
        ("/tasks/a%20b", "GET, PUT"),
        ("/assets/viewer.js", "GET"),
    ] {
        let response = Response::request("POST", server.addr(), path, &[]).await;
        assert_eq!(response.status, 405, "{path}");
        assert_eq!(response.header("allow"), Some(allow), "{path}");
    }
}

/// The stylesheet, the scripts and the client (`taskstream.js`) are served from the binary with
/// their types, revalidated with an `ETag` (`304` while unchanged); unknown files are `404`.
#[tokio::test]
async fn assets_are_served_with_types_and_etags() {
    let server = TestServer::start(fast_config()).await;
    for (name, content_type) in [
        ("viewer.css", "text/css; charset=utf-8"),
        ("viewer.js", "text/javascript; charset=utf-8"),
        ("taskstream.js", "text/javascript; charset=utf-8"),
    ] {
        let path = format!("/assets/{name}");
        let response = get(&server, &path).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some(content_type));
        assert_eq!(response.header("cache-control"), Some("no-cache"));
        let etag = response.header("etag").expect("etag").to_owned();
        assert!(!response.text().await.is_empty());

        let again = Response::get(server.addr(), &path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{name}");
        assert!(again.text().await.is_empty());
        let changed = Response::get(server.addr(), &path, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(changed.status, 200, "{name}");
    }
    assert_eq!(get(&server, "/assets/nope.js").await.status, 404);
    assert_eq!(get(&server, "/assets/..%2FCargo.toml").await.status, 404);
}

/// The task list query can be limited to the ids a reader may see: the seam that
/// authentication uses for `/`.
#[tokio::test]
async fn the_task_list_can_be_limited_to_given_ids() {
    let server = TestServer::start(fast_config()).await;
    for id in ["a", "b", "c"] {
        server.task(id, "Open").await;
    }
    let db = Db::new(
        taskstream::db::pg_config(&server.url).expect("url"),
        1,
        std::time::Duration::from_secs(5),
        Arc::new(Metrics::default()),
    );
    let only = ["c".to_owned(), "a".to_owned(), "zz".to_owned()];
    let tasks = db
        .tasks(TaskListing {
            limit: 10,
            before: None,
            only: Some(&only),
        })
        .await
        .expect("list");
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["c", "a"], "newest first, only the allowed ids");
}

/// With authentication on, the pages need a token like the streams: `/` lists only the tasks
/// the token covers, a task page it does not cover is `403`, and no token is `401`. The
/// stylesheet and script hold no data and stay open.
#[tokio::test]
async fn with_auth_the_viewer_shows_only_what_the_token_covers() {
    let server = TestServer::start(with_auth(fast_config())).await;
    for id in ["a", "b", "c"] {
        server.task(id, "Open").await;
    }
    let cookie = format!("taskstream_token={}", token(&["a", "c"], 60));
    let with_token = |path: &'static str| {
        let cookie = cookie.clone();
        let addr = server.addr();
        async move { Response::get(addr, path, &[("cookie", &cookie), BROWSER]).await }
    };

    let index = with_token("/").await;
    assert_eq!(index.status, 200);
    assert_eq!(linked_ids(&index.text().await), ["c", "a"]);
    assert_eq!(with_token("/tasks/a").await.status, 200);
    assert_eq!(with_token("/tasks/b").await.status, 403);
    for path in ["/", "/tasks/a"] {
        let response = get(&server, path).await;
        assert_eq!(response.status, 401, "{path}");
        assert!(response.header("www-authenticate").is_some(), "{path}");
    }
    assert_eq!(get(&server, "/assets/viewer.js").await.status, 200);
    assert_eq!(get(&server, "/assets/taskstream.js").await.status, 200);
}

/// A page asked for without a valid token answers `401` with the sign-in page (a person is
/// reading): its form posts the token to `/session`, its script is served, and the page keeps
/// the pages' content-security-policy.
#[tokio::test]
async fn without_a_token_the_pages_ask_to_sign_in() {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("a", "Open").await;
    let expired = format!("taskstream_token={}", token(&["a"], -5));
    for (path, cookie, reason) in [
        ("/", None, "a token is required"),
        (
            "/tasks/a",
            Some(expired.as_str()),
            "the token is invalid or expired",
        ),
    ] {
        let mut headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
        headers.push(BROWSER);
        let response = Response::get(server.addr(), path, &headers).await;
        assert_eq!(response.status, 401, "{path}");
        assert!(
            response
                .header("content-type")
                .expect("type")
                .starts_with("text/html")
        );
        assert!(response.header("content-security-policy").is_some());
        assert!(response.header("www-authenticate").is_some());
        let html = response.text().await;
        assert!(html.contains(r#"<form id="signin""#), "{path}: {html}");
        assert!(html.contains(reason), "{path}: {html}");
        assert!(html.contains(r#"<script src="/assets/signin.js">"#));
    }
    let script = get(&server, "/assets/signin.js").await;
    assert_eq!(script.status, 200);
    assert!(script.text().await.contains("'/session'"));
    // The stream itself stays a JSON 401 for programs.
    let stream = get(&server, "/tasks/a/events/stream").await;
    assert_eq!(stream.status, 401);
    assert_eq!(stream.header("content-type"), Some("application/json"));
}

/// `?before=` naming a task the token does not cover answers exactly as a task that does not
/// exist: where the page would start would tell when that task was created, and that it
/// exists.
#[tokio::test]
async fn before_an_uncovered_task_reveals_nothing() {
    let server = TestServer::start(with_auth(fast_config())).await;
    for id in ["a", "secret", "c"] {
        server.task(id, "Open").await;
    }
    let cookie = format!("taskstream_token={}", token(&["a", "c"], 60));
    let page = |before: &'static str| {
        let (addr, cookie) = (server.addr(), cookie.clone());
        async move {
            let path = format!("/?before={before}");
            let response = Response::get(addr, &path, &[("cookie", &cookie)]).await;
            assert_eq!(response.status, 200, "{path}");
            linked_ids(&response.text().await)
        }
    };
    assert_eq!(page("c").await, ["a"], "paging through covered tasks works");
    let unknown = page("no-such-task").await;
    assert!(unknown.is_empty());
    assert_eq!(page("secret").await, unknown);
}
