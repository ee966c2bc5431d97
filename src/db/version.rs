//! The schema version a database records, and what it means for this binary: migrate, serve,
//! serve with a warning (a rolling deploy), or refuse.

use std::fmt;

use tokio_postgres::Client;

use super::schema::SchemaVersion;

/// What a database holds of taskstream's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// No taskstream tables at all.
    Missing,
    /// The tables, at this version. Tables without a recorded version (the schema before
    /// versioned migrations, or a first migration that did not complete) are version 1.
    At(SchemaVersion),
}

/// The version of the tables from before versioned migrations.
const UNVERSIONED: SchemaVersion = SchemaVersion {
    version: 1,
    min_reader: 1,
};

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recorded::Missing => f.write_str("no taskstream schema"),
            Recorded::At(at) if *at == UNVERSIONED => {
                f.write_str("schema version 1 (before versioned migrations)")
            }
            Recorded::At(at) => write!(f, "schema version {}", at.version),
        }
    }
}

/// What a binary built for one schema version does with a database's [`Recorded`] version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The same version: nothing to apply.
    Current,
    /// Missing or older: apply the schema (or, without migrations, refuse to start).
    Older,
    /// Newer, and this binary is at least its `min_reader`: serve it as it is and warn (a
    /// rolling deploy that has not reached this instance yet). Never migrated downward.
    NewerReadable(SchemaVersion),
    /// Newer, and this binary is below its `min_reader`: refuse.
    TooNew(SchemaVersion),
}

/// The verdict of a binary built for `binary` on a database at `recorded`.
pub(crate) fn verdict(binary: SchemaVersion, recorded: Recorded) -> Verdict {
    match recorded {
        Recorded::Missing => Verdict::Older,
        Recorded::At(at) if at.version < binary.version => Verdict::Older,
        Recorded::At(at) if at.version == binary.version => Verdict::Current,
        Recorded::At(at) if binary.version >= at.min_reader => Verdict::NewerReadable(at),
        Recorded::At(at) => Verdict::TooNew(at),
    }
}

/// Reads the recorded version (needs SELECT on `taskstream_schema`, which `taskstream_server`
/// has; tables that do not exist need no right).
pub(crate) async fn read_recorded(client: &Client) -> Result<Recorded, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('taskstream_schema') IS NOT NULL, to_regclass('tasks') IS NOT NULL",
            &[],
        )
        .await?;
    let (versioned, has_tasks): (bool, bool) = (row.get(0), row.get(1));
    if versioned {
        let rows = client
            .query("SELECT version, min_reader FROM taskstream_schema", &[])
            .await?;
        if let Some(row) = rows.first() {
            return Ok(Recorded::At(SchemaVersion {
                version: row.get(0),
                min_reader: row.get(1),
            }));
        }
    }
    Ok(if has_tasks || versioned {
        Recorded::At(UNVERSIONED)
    } else {
        Recorded::Missing
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: i32, min_reader: i32) -> Recorded {
        Recorded::At(SchemaVersion {
            version,
            min_reader,
        })
    }

    const BINARY: SchemaVersion = SchemaVersion {
        version: 3,
        min_reader: 2,
    };

    #[test]
    fn a_missing_or_older_schema_is_migrated() {
        assert_eq!(verdict(BINARY, Recorded::Missing), Verdict::Older);
        assert_eq!(verdict(BINARY, at(1, 1)), Verdict::Older);
        assert_eq!(verdict(BINARY, at(2, 2)), Verdict::Older);
    }

    #[test]
    fn the_same_version_needs_nothing() {
        assert_eq!(verdict(BINARY, at(3, 2)), Verdict::Current);
        assert_eq!(verdict(BINARY, at(3, 3)), Verdict::Current);
    }

    #[test]
    fn a_newer_schema_is_served_only_down_to_its_min_reader() {
        let newer = SchemaVersion {
            version: 5,
            min_reader: 3,
        };
        assert_eq!(
            verdict(BINARY, Recorded::At(newer)),
            Verdict::NewerReadable(newer)
        );
        let beyond = SchemaVersion {
            version: 5,
            min_reader: 4,
        };
        assert_eq!(
            verdict(BINARY, Recorded::At(beyond)),
            Verdict::TooNew(beyond)
        );
    }

    #[test]
    fn versions_read_as_operators_say_them() {
        assert_eq!(Recorded::Missing.to_string(), "no taskstream schema");
        assert_eq!(
            at(1, 1).to_string(),
            "schema version 1 (before versioned migrations)"
        );
        assert_eq!(at(4, 2).to_string(), "schema version 4");
    }
}
