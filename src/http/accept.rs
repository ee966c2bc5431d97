//! Which representation a client prefers, by its `Accept` header: the one place where a path
//! that serves several (`GET /tasks/{id}`: JSON or the viewer's page; `GET /tasks`: JSON or the
//! live task list) chooses. Responses that depend on it carry `vary: accept`.

use http::HeaderMap;
use http::header::ACCEPT;

/// A representation a path can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Representation {
    /// `application/json`.
    Json,
    /// `text/html`: a viewer page.
    Html,
    /// `text/event-stream`: a live stream.
    EventStream,
}

impl Representation {
    fn media_type(self) -> (&'static str, &'static str) {
        match self {
            Representation::Json => ("application", "json"),
            Representation::Html => ("text", "html"),
            Representation::EventStream => ("text", "event-stream"),
        }
    }
}

/// The client's preferred representation among `offered` (the first offered is the default):
/// the highest `q` wins; on a tie, an exact media type beats a wildcard, and then the earlier
/// offer wins. So a browser (`text/html,…,*/*;q=0.8`) gets HTML where it is offered, and curl
/// (`*/*`) or no `Accept` at all gets the first offer.
pub(crate) fn preferred(headers: &HeaderMap, offered: &[Representation]) -> Representation {
    let ranges: Vec<(String, f32)> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .filter_map(media_range)
        .collect();
    let default = offered.first().copied().unwrap_or(Representation::Json);
    if ranges.is_empty() {
        return default;
    }
    let mut best: Option<(Representation, f32, u8)> = None;
    for &offer in offered {
        let (kind, sub) = offer.media_type();
        // The most specific range that matches this offer decides its q (RFC 9110, 12.5.1).
        let matched = ranges
            .iter()
            .filter_map(|(range, q)| {
                let specificity = match range.split_once('/')? {
                    (k, s) if k == kind && s == sub => 2,
                    (k, "*") if k == kind => 1,
                    ("*", "*") => 0,
                    _ => return None,
                };
                Some((specificity, *q))
            })
            .max_by_key(|(specificity, _)| *specificity);
        if let Some((specificity, q)) = matched
            && q > 0.0
            && best.is_none_or(|(_, best_q, best_s)| (q, specificity) > (best_q, best_s))
        {
            best = Some((offer, q, specificity));
        }
    }
    best.map_or(default, |(offer, _, _)| offer)
}

/// A media range and its `q` (1 when absent, 0 when unreadable: not acceptable).
fn media_range(item: &str) -> Option<(String, f32)> {
    let mut parts = item.split(';');
    let range = parts.next()?.trim().to_ascii_lowercase();
    if range.is_empty() {
        return None;
    }
    let q = parts
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
        .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(0.0));
    Some((range, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Representation::{EventStream, Html, Json};
    use http::HeaderValue;

    fn prefers(accept: &str, offered: &[Representation]) -> Representation {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).expect("header"));
        preferred(&headers, offered)
    }

    #[test]
    fn browsers_get_html_and_programs_get_json() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(prefers(browser, &[Json, Html]), Html);
        assert_eq!(prefers("*/*", &[Json, Html]), Json);
        assert_eq!(preferred(&HeaderMap::new(), &[Json, Html]), Json);
        assert_eq!(prefers("application/json", &[Json, Html]), Json);
        assert_eq!(prefers("text/*", &[Json, Html]), Html);
        assert_eq!(
            prefers("text/html;q=0.5, application/json", &[Json, Html]),
            Json
        );
        assert_eq!(
            prefers("text/html, application/json;q=0", &[Json, Html]),
            Html
        );
        assert_eq!(
            prefers("image/png", &[Json, Html]),
            Json,
            "none: the default"
        );
    }

    #[test]
    fn event_source_gets_the_stream_and_everyone_else_json() {
        assert_eq!(
            prefers("text/event-stream", &[Json, EventStream]),
            EventStream
        );
        assert_eq!(prefers("*/*", &[Json, EventStream]), Json);
        assert_eq!(
            prefers("text/html,*/*;q=0.8", &[Json, EventStream]),
            Json,
            "a browser's page load is not a stream"
        );
        assert_eq!(preferred(&HeaderMap::new(), &[Json, EventStream]), Json);
    }
}
