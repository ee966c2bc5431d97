//! The server's own counters, read from the OpenMetrics text of taskstream's `/metrics`: the
//! database queries, catch-ups, events sent and slow disconnects a run reports, and the
//! version a running server was built as.

/// The taskstream counters a run reports.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ServerCounters {
    /// `taskstream_db_queries_total`, all kinds.
    pub queries: f64,
    /// `taskstream_catch_ups_total`: live streams that fell behind and read the table.
    pub catch_ups: f64,
    /// `taskstream_events_sent_total`.
    pub events_sent: f64,
    /// `taskstream_stream_ends_total{reason="Slow"}`.
    pub slow_disconnects: f64,
}

impl ServerCounters {
    /// Reads the counters from the OpenMetrics text of `/metrics`.
    pub fn parse(text: &str) -> ServerCounters {
        let mut counters = ServerCounters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (metric, labels) = name.split_once('{').unwrap_or((name, ""));
            match metric {
                "taskstream_db_queries_total" => counters.queries += value,
                "taskstream_catch_ups_total" => counters.catch_ups += value,
                "taskstream_events_sent_total" => counters.events_sent += value,
                "taskstream_stream_ends_total" if labels.to_lowercase().contains("slow") => {
                    counters.slow_disconnects += value;
                }
                _ => {}
            }
        }
        counters
    }

    /// What happened between `self` (before) and `after`.
    pub fn delta(&self, after: &ServerCounters) -> ServerCounters {
        ServerCounters {
            queries: after.queries - self.queries,
            catch_ups: after.catch_ups - self.catch_ups,
            events_sent: after.events_sent - self.events_sent,
            slow_disconnects: after.slow_disconnects - self.slow_disconnects,
        }
    }
}

/// The version in the `taskstream_build_info` metric, if there is one.
pub fn build_version(text: &str) -> Option<&str> {
    text.lines()
        .find(|l| l.starts_with("taskstream_build_info"))
        .and_then(|l| l.split("version=\"").nth(1))
        .and_then(|v| v.split('"').next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_counters() {
        let text = "# TYPE taskstream_db_queries counter\n\
            taskstream_db_queries_total{kind=\"Position\"} 3\n\
            taskstream_db_queries_total{kind=\"Events\"} 4\n\
            taskstream_catch_ups_total 2\n\
            taskstream_events_sent_total 100\n\
            taskstream_stream_ends_total{reason=\"Slow\"} 1\n\
            taskstream_stream_ends_total{reason=\"ClientGone\"} 9\n\
            # EOF\n";
        let c = ServerCounters::parse(text);
        assert_eq!(
            (c.queries, c.catch_ups, c.events_sent, c.slow_disconnects),
            (7.0, 2.0, 100.0, 1.0)
        );
    }

    #[test]
    fn reads_the_servers_version() {
        let text = "# TYPE taskstream_build_info gauge\n\
            taskstream_build_info{version=\"0.1.0\"} 1\n";
        assert_eq!(build_version(text), Some("0.1.0"));
        assert_eq!(build_version("taskstream_events_sent_total 1\n"), None);
    }
}
