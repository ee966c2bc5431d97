//! A failed database operation, and who is to blame for it, read from its SQLSTATE in this one
//! place: the request's data (the answer is a `4xx`), a database that is unreachable or
//! overloaded (`503`, try again), or neither (a bug, or a schema or grant that does not match).

use std::fmt;
use std::time::Duration;

use deadpool_postgres::PoolError;

use crate::metrics::QueryKind;

/// A failed database operation. The text says which operation failed and why.
#[derive(Debug)]
pub struct DbError {
    pub(super) kind: QueryKind,
    pub(super) source: DbErrorSource,
}

#[derive(Debug)]
pub(super) enum DbErrorSource {
    /// No connection could be had from the pool in time.
    Pool(PoolError),
    /// PostgreSQL (or the connection to it) failed the query.
    Query(tokio_postgres::Error),
    /// No answer within the client-side deadline: the connection was dropped.
    Deadline(Duration),
    /// A statement that always returns a row returned none (a bug, or a schema that does not
    /// match).
    NoRow,
}

/// Who is to blame for a failed query, which decides the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The data the request carried (`4xx`).
    Request,
    /// PostgreSQL is unreachable, overloaded, shutting down, or did not answer in time (`503`).
    Unavailable,
    /// Neither: a bug, or a schema or grant that does not match this binary (`500`).
    Server,
}

impl DbError {
    /// Who is to blame.
    pub fn cause(&self) -> Cause {
        match &self.source {
            DbErrorSource::Pool(_) | DbErrorSource::Deadline(_) => Cause::Unavailable,
            DbErrorSource::Query(error) => cause_of(error.code().map(|state| state.code())),
            DbErrorSource::NoRow => Cause::Server,
        }
    }
}

/// What a refused write means for its client, where the answer is not just "bad data".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The task does not exist (`23503`, a foreign key): `404`.
    MissingTask,
    /// The session belongs to another task (`23505` on `agent_sessions_pkey`, raised by the
    /// trigger that assigns `seq`): `409`.
    SessionOfAnotherTask,
    /// A lock was not granted within `lock_timeout` (`55P03`): another request holds it.
    LockBusy,
}

impl DbError {
    /// The refusal this error is, if PostgreSQL refused the write for one of those reasons.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let DbErrorSource::Query(error) = &self.source else {
            return None;
        };
        let error = error.as_db_error()?;
        match (error.code().code(), error.constraint()) {
            ("23503", _) => Some(Refusal::MissingTask),
            ("23505", Some("agent_sessions_pkey")) => Some(Refusal::SessionOfAnotherTask),
            ("55P03", _) => Some(Refusal::LockBusy),
            _ => None,
        }
    }
}

/// The cause of an error with `sqlstate` (`None`: no answer from PostgreSQL at all, so the
/// connection failed), by its class, the SQLSTATE's first two characters.
pub(crate) fn cause_of(sqlstate: Option<&str>) -> Cause {
    let Some(code) = sqlstate else {
        return Cause::Unavailable;
    };
    match code.get(..2) {
        // Data exception (a NUL in text, a bad encoding, a value out of range), integrity
        // constraint violation, program limit exceeded (a value too large to index).
        Some("22" | "23" | "54") => Cause::Request,
        // Connection exception, transaction rollback (serialization failure, deadlock:
        // retryable), insufficient resources, lock not available, operator intervention
        // (statement timeout, shutdown, crash recovery), system error.
        Some("08" | "40" | "53" | "55" | "57" | "58") => Cause::Unavailable,
        _ => Cause::Server,
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            DbErrorSource::Pool(e) => {
                write!(f, "{:?} query: no database connection: {e}", self.kind)
            }
            DbErrorSource::Query(e) => write!(f, "{:?} query failed: {e}", self.kind),
            DbErrorSource::Deadline(after) => write!(
                f,
                "{:?} query: no answer within {after:?}; its connection was dropped",
                self.kind
            ),
            DbErrorSource::NoRow => write!(f, "{:?} query returned no row", self.kind),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            DbErrorSource::Pool(e) => Some(e),
            DbErrorSource::Query(e) => Some(e),
            DbErrorSource::Deadline(_) | DbErrorSource::NoRow => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlstate_class_says_who_is_to_blame() {
        // A NUL in a text parameter, bad UTF-8, a value out of range, too long for an index.
        for code in ["22021", "22P05", "22003", "23505", "54000"] {
            assert_eq!(cause_of(Some(code)), Cause::Request, "{code}");
        }
        // Refused connections, too many clients, statement timeout, admin shutdown, crash
        // recovery, deadlock, disk full, lock timeout, I/O error.
        for code in [
            "08006", "53300", "57014", "57P01", "57P03", "40P01", "53100", "55P03", "58030",
        ] {
            assert_eq!(cause_of(Some(code)), Cause::Unavailable, "{code}");
        }
        // Missing table or grant, a prepared statement a pooler lost, an internal error.
        for code in ["42P01", "42501", "26000", "XX000", "P0001", "0A000"] {
            assert_eq!(cause_of(Some(code)), Cause::Server, "{code}");
        }
        assert_eq!(cause_of(None), Cause::Unavailable, "the connection failed");
        assert_eq!(cause_of(Some("")), Cause::Server);
    }
}
