//! What the JSON API writes on the server's own pool: a batch of events in one statement, a task
//! created or updated, and the idempotency keys that make a retried batch safe (schema 3's
//! `taskstream_idempotency`, the servers' table alone). The triggers do the rest, exactly as for
//! an agent's own `INSERT`: sessions, gapless `seq`, notifications, `complete` on a status
//! change.

use std::time::Duration;

use tokio_postgres::types::ToSql;

use super::error::DbErrorSource;
use super::reads::{TaskSummary, latest_session, task_columns, task_from};
use super::{Db, DbError};
use crate::metrics::QueryKind;

/// A batch of one session's events, in array order, in one statement (so in one transaction):
/// the BEFORE INSERT trigger locks the session's row for the first row, so the batch's seqs are
/// consecutive, and any failing row fails them all.
const INSERT_BATCH_SQL: &str = "
    INSERT INTO agent_events (task_id, session_id, event_type, content)
    SELECT $1, $2, e.event_type, e.content
    FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS e (event_type, content, n)
    ORDER BY e.n
    RETURNING seq";

/// Takes an idempotency key for this request, or learns that it is taken: a key older than the
/// window (`$4` seconds) counts as free and is taken over. A request racing one that holds the
/// key waits here, on the key's index entry, until that one commits (then no row: read its
/// answer) or rolls back (then this one takes the key), or `lock_timeout` passes.
const CLAIM_KEY_SQL: &str = "
    INSERT INTO taskstream_idempotency AS k (task_id, key, body_hash, status, response)
    VALUES ($1, $2, $3, 0, '')
    ON CONFLICT (task_id, key) DO UPDATE
        SET body_hash = EXCLUDED.body_hash, status = 0, response = '', created_at = now()
        WHERE k.created_at < now() - make_interval(secs => $4)
    RETURNING true";

/// The answer stored under a key that another request took.
const STORED_ANSWER_SQL: &str = "
    SELECT body_hash, status, response FROM taskstream_idempotency
    WHERE task_id = $1 AND key = $2";

/// Stores the answer of the request that took the key, in its transaction.
const STORE_ANSWER_SQL: &str = "
    UPDATE taskstream_idempotency SET status = $3, response = $4 WHERE task_id = $1 AND key = $2";

/// Deletes the keys older than the window (`$1` seconds) and counts them.
const PRUNE_KEYS_SQL: &str = "
    WITH pruned AS (
        DELETE FROM taskstream_idempotency WHERE created_at < now() - make_interval(secs => $1)
        RETURNING 1
    ) SELECT count(*) FROM pruned";

/// Creates the task or updates the fields given (`NULL`: unchanged; on creation the schema's
/// defaults), and answers it as [`task_columns!`] read it, first column whether it was created.
/// `xmax = 0` is PostgreSQL's mark of a row this statement inserted rather than updated.
const PUT_TASK_SQL: &str = concat!(
    "WITH t AS (
        INSERT INTO tasks AS t (id, title, status)
        VALUES ($1, coalesce($2, ''), coalesce($3, 'Open'))
        ON CONFLICT (id) DO UPDATE
            SET title = coalesce($2, t.title), status = coalesce($3, t.status)
        RETURNING t.*, (t.xmax = 0) AS created
    ) SELECT t.created, ",
    task_columns!(),
    " FROM t ",
    latest_session!()
);

/// The rights the JSON API's writes need, each as a check of the server's own login: the
/// writer's column rights (those of `taskstream_writer`, or an owner's), and the idempotency
/// table (`taskstream_server`'s alone). Each row names what is missing when it is false.
const WRITE_PRIVILEGES_SQL: &str = "
    SELECT need FROM (VALUES
        ('INSERT (id, title, status) ON tasks',
         has_column_privilege('tasks', 'id', 'INSERT')
         AND has_column_privilege('tasks', 'title', 'INSERT')
         AND has_column_privilege('tasks', 'status', 'INSERT')),
        ('UPDATE (title, status) ON tasks',
         has_column_privilege('tasks', 'title', 'UPDATE')
         AND has_column_privilege('tasks', 'status', 'UPDATE')),
        ('INSERT (task_id, session_id, event_type, content) ON agent_events',
         has_column_privilege('agent_events', 'task_id', 'INSERT')
         AND has_column_privilege('agent_events', 'session_id', 'INSERT')
         AND has_column_privilege('agent_events', 'event_type', 'INSERT')
         AND has_column_privilege('agent_events', 'content', 'INSERT')),
        ('SELECT, INSERT, UPDATE, DELETE ON taskstream_idempotency',
         CASE WHEN to_regclass('taskstream_idempotency') IS NULL THEN false
              ELSE has_table_privilege('taskstream_idempotency', 'SELECT')
                   AND has_table_privilege('taskstream_idempotency', 'INSERT')
                   AND has_table_privilege('taskstream_idempotency', 'UPDATE')
                   AND has_table_privilege('taskstream_idempotency', 'DELETE') END)
    ) AS p (need, held)
    WHERE NOT held";

/// How long a request waits for another that holds its idempotency key (or its session's
/// lock) before it gives up with `409` (or `503`) and `retry-after`.
pub(crate) const KEY_WAIT: Duration = Duration::from_secs(5);

/// One batch of events of one session.
#[derive(Debug)]
pub(crate) struct EventBatch<'a> {
    /// The task they belong to.
    pub(crate) task_id: &'a str,
    /// Their session.
    pub(crate) session: &'a str,
    /// Each event's type, in order.
    pub(crate) types: Vec<&'a str>,
    /// Each event's content, in order.
    pub(crate) contents: Vec<&'a str>,
}

/// An idempotency key and what identifies the request that carries it.
#[derive(Debug)]
pub(crate) struct KeyClaim<'a> {
    /// The `Idempotency-Key` header.
    pub(crate) key: &'a str,
    /// SHA-256 of the request body.
    pub(crate) body_hash: &'a [u8],
    /// How long a key is remembered.
    pub(crate) window: Duration,
}

/// An answer as it is sent and stored: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// HTTP status code.
    pub(crate) status: u16,
    /// The JSON body.
    pub(crate) body: String,
}

/// What came of a write that carried an idempotency key.
#[derive(Debug)]
pub(crate) enum Keyed {
    /// This request took the key and wrote; its answer is stored.
    Written(Answer),
    /// An earlier request with the same key and body answered this; nothing was written.
    Replayed(Answer),
    /// An earlier request used the key with another body; nothing was written.
    OtherBody,
}

/// A task after `PUT`.
#[derive(Debug)]
pub(crate) struct PutTask {
    /// Whether it was created (else updated).
    pub(crate) created: bool,
    /// The task as it now is.
    pub(crate) task: TaskSummary,
}

impl Db {
    /// Writes a batch in one statement; returns each event's seq, in array order.
    pub(crate) async fn write_events(&self, batch: &EventBatch<'_>) -> Result<Vec<i64>, DbError> {
        let rows = self
            .query(
                QueryKind::WriteEvents,
                INSERT_BATCH_SQL,
                &[
                    &batch.task_id,
                    &batch.session,
                    &batch.types,
                    &batch.contents,
                ],
            )
            .await?;
        Ok(sorted_seqs(&rows))
    }

    /// Writes a batch under an idempotency key, in one transaction with the key: `answer`
    /// makes the answer of the seqs written, which is stored with the key and returned.
    pub(crate) async fn write_events_once(
        &self,
        batch: &EventBatch<'_>,
        claim: &KeyClaim<'_>,
        answer: impl FnOnce(&[i64]) -> Answer,
    ) -> Result<Keyed, DbError> {
        self.on_client(QueryKind::WriteEvents, async |client| {
            let transaction = client.transaction().await?;
            let keyed: Keyed = async {
                let wait = format!("{}ms", KEY_WAIT.as_millis());
                transaction
                    .execute("SELECT set_config('lock_timeout', $1, true)", &[&wait])
                    .await?;
                let window = claim.window.as_secs_f64();
                let key_params: [&(dyn ToSql + Sync); 4] =
                    [&batch.task_id, &claim.key, &claim.body_hash, &window];
                let statement = transaction.prepare_cached(CLAIM_KEY_SQL).await?;
                if transaction.query(&statement, &key_params).await?.is_empty() {
                    let statement = transaction.prepare_cached(STORED_ANSWER_SQL).await?;
                    let rows = transaction
                        .query(&statement, &[&batch.task_id, &claim.key])
                        .await?;
                    let Some(row) = rows.first() else {
                        // Pruned between the two statements: as busy as a key can be.
                        return Ok(Keyed::Replayed(Answer {
                            status: 409,
                            body: r#"{"error":"the idempotency key changed hands; retry"}"#
                                .to_owned(),
                        }));
                    };
                    let stored_hash: Vec<u8> = row.get(0);
                    if stored_hash != claim.body_hash {
                        return Ok(Keyed::OtherBody);
                    }
                    let status: i16 = row.get(1);
                    return Ok(Keyed::Replayed(Answer {
                        status: u16::try_from(status).unwrap_or(500),
                        body: row.get(2),
                    }));
                }
                let statement = transaction.prepare_cached(INSERT_BATCH_SQL).await?;
                let rows = transaction
                    .query(
                        &statement,
                        &[
                            &batch.task_id,
                            &batch.session,
                            &batch.types,
                            &batch.contents,
                        ],
                    )
                    .await?;
                let answer = answer(&sorted_seqs(&rows));
                let status = i16::try_from(answer.status).unwrap_or(i16::MAX);
                let statement = transaction.prepare_cached(STORE_ANSWER_SQL).await?;
                transaction
                    .execute(
                        &statement,
                        &[&batch.task_id, &claim.key, &status, &answer.body],
                    )
                    .await?;
                Ok(Keyed::Written(answer))
            }
            .await?;
            // Nothing written (a replay, another body): the transaction rolls back as it is
            // dropped.
            if let Keyed::Written(_) = &keyed {
                transaction.commit().await?;
            }
            Ok(keyed)
        })
        .await
    }

    /// Creates or updates a task (`None`: leave the field as it is).
    pub(crate) async fn put_task(
        &self,
        task_id: &str,
        title: Option<&str>,
        status: Option<&str>,
    ) -> Result<PutTask, DbError> {
        let rows = self
            .query(
                QueryKind::PutTask,
                PUT_TASK_SQL,
                &[&task_id, &title, &status],
            )
            .await?;
        let row = rows.first().ok_or_else(|| DbError {
            kind: QueryKind::PutTask,
            source: DbErrorSource::NoRow,
        })?;
        Ok(PutTask {
            created: row.get(0),
            task: task_from(row, 1),
        })
    }

    /// Deletes the idempotency keys older than `window`; returns how many.
    pub(crate) async fn prune_keys(&self, window: Duration) -> Result<u64, DbError> {
        let rows = self
            .query(QueryKind::Upkeep, PRUNE_KEYS_SQL, &[&window.as_secs_f64()])
            .await?;
        Ok(rows
            .first()
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// What the server's login lacks for the JSON API's writes (empty: nothing).
    pub(crate) async fn missing_write_privileges(&self) -> Result<Vec<String>, DbError> {
        let rows = self
            .query(QueryKind::Upkeep, WRITE_PRIVILEGES_SQL, &[])
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// The seqs `RETURNING seq` gave, in array order: one session's batch gets consecutive seqs in
/// insertion order, so sorting them restores it whatever order the rows came back in.
fn sorted_seqs(rows: &[tokio_postgres::Row]) -> Vec<i64> {
    let mut seqs: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    seqs.sort_unstable();
    seqs
}
