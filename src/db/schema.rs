//! The schema: `schema.sql`, compiled into the binary, and the version it carries.
//!
//! The file is the single source of truth: its two `SET taskstream.… = N;` lines are this
//! binary's schema version and the oldest reader of it, read here so that the number is
//! written once. `taskstream migrate`, the server, the tests and the benchmark apply it through
//! [`crate::db::migrate`].

use std::fmt;
use std::sync::OnceLock;

/// The schema, applied by `taskstream migrate`, the server (with `--migrate true`), the tests
/// and the benchmark alike.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// A schema version and the oldest schema version a binary may be built for and still serve
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The version, from 1 (the schema before versioned migrations).
    pub version: i32,
    /// A binary built for a schema version below this one cannot serve this schema.
    pub min_reader: i32,
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (min_reader {})", self.version, self.min_reader)
    }
}

/// The version of [`SCHEMA`]: what this binary migrates to and serves.
pub fn schema_version() -> SchemaVersion {
    static VERSION: OnceLock<SchemaVersion> = OnceLock::new();
    *VERSION.get_or_init(|| {
        parse_version(SCHEMA).expect("schema.sql sets its version and min_reader (a unit test)")
    })
}

/// Reads `SET taskstream.schema_version = N;` and `SET taskstream.min_reader = M;` from the
/// text of a schema file. `None` when either is missing or not a positive number, or when
/// `min_reader` is above the version.
fn parse_version(schema: &str) -> Option<SchemaVersion> {
    let setting = |name: &str| -> Option<i32> {
        let prefix = format!("SET taskstream.{name} = ");
        let line = schema.lines().find_map(|line| line.strip_prefix(&prefix))?;
        let value: i32 = line.strip_suffix(';')?.trim().parse().ok()?;
        (value >= 1).then_some(value)
    };
    let version = setting("schema_version")?;
    let min_reader = setting("min_reader")?;
    (min_reader <= version).then_some(SchemaVersion {
        version,
        min_reader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_carries_its_version() {
        let version = schema_version();
        assert!(version.version >= 2, "{version}");
        assert!(version.min_reader <= version.version);
    }

    #[test]
    fn the_version_lines_are_read_exactly() {
        let text = "-- x\nSET taskstream.schema_version = 7;\nSET taskstream.min_reader = 3;\n";
        assert_eq!(
            parse_version(text),
            Some(SchemaVersion {
                version: 7,
                min_reader: 3
            })
        );
        for bad in [
            "SET taskstream.schema_version = 7;\n",
            "SET taskstream.schema_version = 7;\nSET taskstream.min_reader = 8;\n",
            "SET taskstream.schema_version = 0;\nSET taskstream.min_reader = 0;\n",
            "SET taskstream.schema_version = x;\nSET taskstream.min_reader = 1;\n",
            "SET taskstream.schema_version = 2\nSET taskstream.min_reader = 1;\n",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }
}
