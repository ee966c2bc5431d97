//! `GET /openapi.json`: the OpenAPI 3.1 document of every API endpoint, kept as a JSON file
//! beside this one (`openapi.json`). Tests prove that it names exactly the router's API routes
//! (`crate::http::routes`) and that real responses validate against its schemas.

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::http::response::{self, Body};

/// The document, as served.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(crate) fn document() -> Response<Body> {
    response::with_type(
        StatusCode::OK,
        "application/json",
        Bytes::from_static(DOCUMENT.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::http::routes::tests::{every_endpoint, resolve};

    fn parsed() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// Every `(method, path)` operation the document names.
    fn documented() -> BTreeSet<(String, String)> {
        let document = parsed();
        let paths = document["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .filter(|key| {
                        ["get", "put", "post", "delete", "options", "patch"].contains(&key.as_str())
                    })
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn is_openapi_3_1() {
        let document = parsed();
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1."))
        );
        assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    }

    /// The page sizes the document states are the ones the code uses.
    #[test]
    fn states_the_page_limits_of_the_code() {
        use crate::api::events::{DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE};
        use crate::http::request::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
        let document = parsed();
        for (path, default, max) in [
            ("/tasks", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            ("/tasks/{id}/events", DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE),
        ] {
            let limit = document["paths"][path]["get"]["parameters"]
                .as_array()
                .and_then(|parameters| parameters.iter().find(|p| p["name"] == "limit"))
                .unwrap_or_else(|| panic!("{path} documents ?limit="));
            assert_eq!(limit["schema"]["default"], default, "{path}");
            let description = limit["description"].as_str().unwrap_or_default();
            assert!(
                description.contains(&format!("capped at {max})")),
                "{path}: {description}"
            );
        }
    }

    /// The longest strings the document states are the ones the code accepts.
    #[test]
    fn states_the_length_limits_of_the_code() {
        use crate::api::input::{MAX_KEY_LEN, MAX_STATUS_LEN};
        use crate::http::request::MAX_TASK_ID_LEN;
        let document = parsed();
        for (pointer, max) in [
            (
                "/paths/~1tasks~1{id}~1events/post/parameters/0/schema",
                MAX_KEY_LEN,
            ),
            ("/components/parameters/TaskId/schema", MAX_TASK_ID_LEN),
            (
                "/components/schemas/TaskIn/properties/status",
                MAX_STATUS_LEN,
            ),
        ] {
            let stated = document.pointer(pointer).map(|schema| &schema["maxLength"]);
            assert_eq!(stated, Some(&Value::from(max)), "{pointer}");
        }
    }

    /// The default number of tasks per multi-task stream the document states is the code's.
    #[test]
    fn states_the_default_tasks_per_stream() {
        let document = parsed();
        let task = document["paths"]["/events/stream"]["get"]["parameters"]
            .as_array()
            .and_then(|parameters| parameters.iter().find(|p| p["name"] == "task"))
            .expect("GET /events/stream documents ?task=");
        let description = task["description"].as_str().unwrap_or_default();
        let stated = format!("(default {})", crate::config::DEFAULT_MAX_STREAM_TASKS);
        assert!(description.contains(&stated), "{description}");
    }

    #[test]
    fn names_every_api_route_of_the_router() {
        let documented = documented();
        for (method, path, endpoint) in every_endpoint() {
            if let Some((m, template)) = endpoint.api_route() {
                assert_eq!(m, method.as_str().to_ascii_lowercase(), "{path}");
                assert!(
                    documented.contains(&(m.to_owned(), template.to_owned())),
                    "{m} {template} is served but not documented"
                );
            }
        }
    }

    #[test]
    fn names_no_route_the_router_lacks() {
        for (method, template) in documented() {
            let path = template.replace("{id}", "some-task");
            let method =
                http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
            let endpoint = resolve(&method, &path);
            let expected = method.as_str().to_ascii_lowercase();
            assert_eq!(
                endpoint.api_route(),
                Some((expected.as_str(), template.as_str())),
                "{method} {template} is documented but the router serves {endpoint:?}"
            );
        }
    }
}
