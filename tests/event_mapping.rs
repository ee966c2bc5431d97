//! Every vector of `vectors/event_mapping.json` (a copy of the shared contract): stored row in,
//! SSE event name and JSON data out — through the pure mapping and through a real stream.

use serde_json::Value;
use support::server::{TestServer, fast_config};

struct Vector {
    event_type: String,
    content: String,
    event: String,
    data: Value,
}

fn vectors() -> Vec<Vector> {
    let file: Value = serde_json::from_str(include_str!("vectors/event_mapping.json"))
        .expect("vector file is JSON");
    file["vectors"]
        .as_array()
        .expect("a vectors array")
        .iter()
        .map(|v| Vector {
            event_type: v["event_type"].as_str().expect("event_type").to_owned(),
            content: v["content"].as_str().expect("content").to_owned(),
            event: v["event"].as_str().expect("event").to_owned(),
            data: v["data"].clone(),
        })
        .collect()
}

/// The mapping functions give every vector's name and data.
#[test]
fn every_vector_maps_as_specified() {
    let vectors = vectors();
    assert!(vectors.len() >= 28, "the whole vector file is read");
    for v in &vectors {
        assert_eq!(
            taskstream::wire::event::event_name(&v.event_type),
            v.event,
            "name of {:?}",
            v.event_type
        );
        assert_eq!(
            taskstream::wire::event::event_data(&v.event_type, &v.content),
            v.data,
            "data of {:?} / {:?}",
            v.event_type,
            v.content
        );
    }
}

/// The same vectors stored as rows arrive over a stream as the specified events, one each.
#[tokio::test]
async fn every_vector_arrives_over_a_stream() {
    let vectors = vectors();
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    for v in &vectors {
        server.event("t", "s1", &v.event_type, &v.content).await;
    }
    let mut sse = server.stream("t").await;
    let events = sse.take(vectors.len()).await;
    for (i, (v, e)) in vectors.iter().zip(&events).enumerate() {
        assert_eq!(e.event, v.event, "vector {i}");
        assert_eq!(e.json(), v.data, "vector {i}");
        assert_eq!(e.id, format!("czE:{}", i + 1));
    }
}
