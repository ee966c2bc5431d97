//! The built-in viewer: the task list at `GET /` and one task's live page at `GET /tasks/{id}`.
//!
//! The page files live in `src/viewer/` and are embedded in the binary, so there is no build
//! step and nothing is fetched from elsewhere. Pages are filled in here from their templates;
//! every value taken from the database goes through [`html_escape`]. The live page's script
//! (`viewer.js`) follows the event stream with `taskstream.js`, the project's client for
//! browsers and Node (also served to other applications), and inserts event content as text
//! only; the pages' content-security-policy (see [`crate::http::response::page`]) forbids
//! inline script besides.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::db::{IN_PROGRESS, TaskSummary};
use crate::http::request::ListPage;

/// The task list page.
const INDEX_HTML: &str = include_str!("index.html");

/// The live page of one task.
const TASK_HTML: &str = include_str!("task.html");

/// The stylesheet of both pages.
const VIEWER_CSS: &str = include_str!("viewer.css");

/// The script of the task page.
const VIEWER_JS: &str = include_str!("viewer.js");

/// The client of the event streams: an ES module for browsers and Node, used by the task page
/// and served for any application.
const TASKSTREAM_JS: &str = include_str!("taskstream.js");

/// The watch page: several tasks over one connection.
const WATCH_HTML: &str = include_str!("watch.html");

/// The cards and status line that the task page and the watch page share.
const CARDS_JS: &str = include_str!("cards.js");

/// The watch page's script.
const WATCH_JS: &str = include_str!("watch.js");

/// The task list's script: keeps the list live.
const LIST_JS: &str = include_str!("list.js");

/// The sign-in page, shown instead of a page when authentication is on and the reader has no
/// valid token.
const SIGNIN_HTML: &str = include_str!("signin.html");

/// The sign-in page's script.
const SIGNIN_JS: &str = include_str!("signin.js");

/// One static file of the viewer, served at `/assets/{name}`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    /// Its `content-type`.
    pub(crate) content_type: &'static str,
    /// Its bytes, embedded in the binary.
    pub(crate) body: &'static str,
}

impl Asset {
    /// A strong `ETag` of the content, so a browser revalidates with one cheap `304`.
    pub(crate) fn etag(&self) -> String {
        format!("\"{:016x}\"", fnv1a(self.body.as_bytes()))
    }
}

/// The static file called `name`, if there is one.
pub(crate) fn asset(name: &str) -> Option<Asset> {
    const JS: &str = "text/javascript; charset=utf-8";
    let (content_type, body) = match name {
        "viewer.css" => ("text/css; charset=utf-8", VIEWER_CSS),
        "viewer.js" => (JS, VIEWER_JS),
        "taskstream.js" => (JS, TASKSTREAM_JS),
        "signin.js" => (JS, SIGNIN_JS),
        "cards.js" => (JS, CARDS_JS),
        "watch.js" => (JS, WATCH_JS),
        "list.js" => (JS, LIST_JS),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// The task list: `tasks` is the page, newest first; `more` says whether older tasks follow;
/// "watch all running" names at most `max_watched` tasks (`--max-stream-tasks`).
pub(crate) fn index_page(
    tasks: &[TaskSummary],
    page: &ListPage,
    more: bool,
    max_watched: usize,
) -> String {
    let list = if tasks.is_empty() {
        let text = if page.before.is_some() {
            "No older tasks."
        } else {
            "No tasks yet."
        };
        fill(
            r#"<p class="empty" id="no-tasks">{{text}}</p>"#,
            &[("text", Slot::Text(text))],
        )
    } else {
        String::new()
    };
    // Always there, so that the live list (list.js) has a place for new tasks.
    let rows: String = tasks.iter().map(task_row).collect();
    let list = format!("{list}<ul class=\"tasks\" id=\"tasks\">\n{rows}</ul>");
    let running: Vec<&str> = tasks
        .iter()
        .filter(|task| task.status == IN_PROGRESS)
        .map(|task| task.id.as_str())
        .take(max_watched)
        .collect();
    let watch = fill(
        concat!(
            r#"<a id="watch-running" class="watch" href="{{href}}" data-max="{{max}}"{{hidden}}>"#,
            "Watch all running</a>"
        ),
        &[
            ("href", Slot::Text(&watch_path(&running))),
            ("max", Slot::Text(&max_watched.to_string())),
            (
                "hidden",
                Slot::Html(if running.is_empty() { " hidden" } else { "" }),
            ),
        ],
    );
    let mut pager = String::new();
    if page.before.is_some() {
        pager.push_str(r#"<a href="/">← Newest</a>"#);
    }
    if let (true, Some(last)) = (more, tasks.last()) {
        let href = format!("/?before={}&limit={}", percent_encode(&last.id), page.limit);
        pager.push_str(&fill(
            r#"<a class="older" href="{{href}}">Older tasks →</a>"#,
            &[("href", Slot::Text(&href))],
        ));
    }
    let pager = if pager.is_empty() {
        pager
    } else {
        format!("<nav class=\"pager\">{pager}</nav>")
    };
    fill(
        INDEX_HTML,
        &[
            ("list", Slot::Html(&list)),
            ("pager", Slot::Html(&pager)),
            ("watch", Slot::Html(&watch)),
        ],
    )
}

/// One row of the task list.
fn task_row(task: &TaskSummary) -> String {
    let href = task_path(&task.id);
    let title = if task.title.is_empty() {
        "(untitled)"
    } else {
        &task.title
    };
    fill(
        concat!(
            r#"<li data-id="{{id}}" data-version="{{version}}">"#,
            r#"<a href="{{href}}"><span class="title">{{title}}</span>"#,
            r#"<span class="id">{{id}}</span></a>"#,
            r#"<span class="status" data-status="{{status}}">{{status}}</span></li>"#,
            "\n"
        ),
        &[
            ("href", Slot::Text(&href)),
            ("title", Slot::Text(title)),
            ("id", Slot::Text(&task.id)),
            ("status", Slot::Text(&task.status)),
            ("version", Slot::Text(&task.version.to_string())),
        ],
    )
}

/// The sign-in page; `reason` says why it is shown (no token, or one that no longer works).
pub(crate) fn signin_page(reason: &str) -> String {
    fill(SIGNIN_HTML, &[("reason", Slot::Text(reason))])
}

/// The live page of `task`.
pub(crate) fn task_page(task: &TaskSummary) -> String {
    let stream = format!("{}/events/stream", task_path(&task.id));
    let title = if task.title.is_empty() {
        &task.id
    } else {
        &task.title
    };
    fill(
        TASK_HTML,
        &[
            ("title", Slot::Text(title)),
            ("id", Slot::Text(&task.id)),
            ("stream", Slot::Text(&stream)),
        ],
    )
}

/// The watch page of `tasks`, in the order given (`titles`: each task's row, where it exists).
pub(crate) fn watch_page(tasks: &[String], titles: &[TaskSummary]) -> String {
    let lanes: String = tasks
        .iter()
        .map(|id| {
            let title = titles
                .iter()
                .find(|row| row.id == *id)
                .map_or(id.as_str(), |row| {
                    if row.title.is_empty() { id } else { &row.title }
                });
            fill(
                concat!(
                    r#"<section class="lane" data-task="{{id}}"><h2><a href="{{href}}">{{title}}</a> "#,
                    r#"<code>{{id}}</code></h2><p class="empty">No events yet.</p>"#,
                    r#"<ol class="events"></ol></section>"#,
                    "\n"
                ),
                &[
                    ("id", Slot::Text(id)),
                    ("href", Slot::Text(&task_path(id))),
                    ("title", Slot::Text(title)),
                ],
            )
        })
        .collect();
    fill(
        WATCH_HTML,
        &[
            ("count", Slot::Text(&tasks.len().to_string())),
            ("lanes", Slot::Html(&lanes)),
        ],
    )
}

/// `/watch?task=…` for `tasks`.
fn watch_path(tasks: &[&str]) -> String {
    let query: Vec<String> = tasks
        .iter()
        .map(|id| format!("task={}", percent_encode(id)))
        .collect();
    format!("/watch?{}", query.join("&"))
}

/// `/tasks/{id}` with the id percent-encoded as one path segment.
fn task_path(id: &str) -> String {
    format!("/tasks/{}", percent_encode(id))
}

/// What fills a `{{name}}` slot of a template.
enum Slot<'a> {
    /// Text, escaped on the way in.
    Text(&'a str),
    /// Markup that this module built from escaped parts.
    Html(&'a str),
}

/// Replaces each `{{name}}` of `template` by its slot. Inserted values are not scanned again,
/// so a value that contains `{{…}}` stays as it is; a name without a slot is left in place
/// (the tests look for that).
fn fill(template: &str, slots: &[(&str, Slot<'_>)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let name = &after[..end];
        match slots.iter().find(|(slot, _)| *slot == name) {
            Some((_, Slot::Text(text))) => out.push_str(&html_escape(text)),
            Some((_, Slot::Html(html))) => out.push_str(html),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `text` made safe for HTML text and quoted attribute values: `&`, `<`, `>`, `"` and `'`
/// become character references.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Every byte outside the unreserved set `A-Z a-z 0-9 - . _ ~` (RFC 3986).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for one path segment or query value: every byte outside the
/// unreserved set becomes `%XX` (the inverse of [`crate::http::request::percent_decode`]).
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// 64-bit FNV-1a: a stable content hash for the assets' `ETag` (not for security).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::percent_decode;

    const HOSTILE: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;

    fn task(id: &str, title: &str, status: &str) -> TaskSummary {
        TaskSummary {
            version: 0,
            id: id.to_owned(),
            title: title.to_owned(),
            status: status.to_owned(),
            created_at: "2026-01-01T00:00:00.000000Z".to_owned(),
            updated_at: "2026-01-01T00:00:00.000000Z".to_owned(),
            session: None,
        }
    }

    fn first_page() -> ListPage {
        ListPage {
            limit: 50,
            before: None,
        }
    }

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            html_escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(html_escape("plain ✓ text"), "plain ✓ text");
        assert_eq!(html_escape(""), "");
    }

    #[test]
    fn percent_encoding_round_trips() {
        for id in ["task-1", "a/b c", "ünï✓", "?x=1&y=\"2\"#", "%41"] {
            let encoded = percent_encode(id);
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
            );
            assert_eq!(percent_decode(&encoded).as_deref(), Some(id));
        }
    }

    #[test]
    fn fill_escapes_text_and_does_not_expand_values() {
        let out = fill(
            "<p>{{a}}</p>{{b}}{{missing}}",
            &[("a", Slot::Text("{{b}} <i>")), ("b", Slot::Html("<br>"))],
        );
        assert_eq!(out, "<p>{{b}} &lt;i&gt;</p><br>{{missing}}");
    }

    #[test]
    fn every_template_slot_is_filled() {
        let tasks = [task("t1", "One", "InProgress"), task("t2", "", "Done")];
        let index = index_page(&tasks, &first_page(), true, 100);
        let page = task_page(&tasks[0]);
        for html in [&index, &page] {
            assert!(!html.contains("{{"), "unfilled slot in {html}");
        }
        assert!(index.contains(r#"<a href="/tasks/t1">"#));
        assert!(index.contains("(untitled)"));
        assert!(index.contains(r#"href="/?before=t2&amp;limit=50""#));
        assert!(page.contains(r#"data-task="t1""#));
    }

    #[test]
    fn hostile_values_are_escaped_everywhere() {
        let hostile = task(HOSTILE, HOSTILE, HOSTILE);
        let index = index_page(std::slice::from_ref(&hostile), &first_page(), true, 100);
        let page = task_page(&hostile);
        for html in [&index, &page] {
            assert!(!html.contains("<script>window"), "raw script in {html}");
            assert!(!html.contains("<img"), "raw img in {html}");
            assert!(html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"));
        }
    }

    #[test]
    fn an_empty_list_says_so() {
        let html = index_page(&[], &first_page(), false, 100);
        assert!(html.contains("No tasks yet."));
        assert!(!html.contains("class=\"pager\""));
        let older = ListPage {
            limit: 10,
            before: Some("x".to_owned()),
        };
        let html = index_page(&[], &older, false, 100);
        assert!(html.contains("No older tasks."));
        assert!(html.contains(r#"<a href="/">← Newest</a>"#));
    }

    #[test]
    fn assets_have_types_and_stable_etags() {
        let css = asset("viewer.css").expect("css");
        let js = asset("viewer.js").expect("js");
        let client = asset("taskstream.js").expect("client");
        assert!(css.content_type.starts_with("text/css"));
        assert!(js.content_type.starts_with("text/javascript"));
        assert!(client.content_type.starts_with("text/javascript"));
        assert_eq!(css.etag(), css.etag());
        assert_ne!(css.etag(), js.etag());
        assert_ne!(js.etag(), client.etag());
        assert!(asset("../Cargo.toml").is_none());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
