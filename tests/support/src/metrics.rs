//! `GET /metrics` as the tests read it: the text exposition format parsed into values.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::http::Response;

/// Parses the text exposition format into `name{labels}` → value (comments skipped).
pub fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            (name.to_owned(), value)
        })
        .collect()
}

/// Scrapes the server at `addr`; `None` when it cannot be reached (a killed instance).
pub async fn scrape(addr: SocketAddr) -> Option<HashMap<String, f64>> {
    let response = Response::try_request("GET", addr, "/metrics", &[])
        .await
        .ok()?;
    (response.status == 200).then_some(())?;
    Some(parse(&response.text().await))
}
