-- taskstream schema: the single source of truth that the server, the tests, `cargo run` and the
-- benchmark all apply as is.
--
-- Safe to apply twice and from several processes at once: everything runs in one transaction
-- under an advisory lock, and every statement is idempotent.
--
-- Writers (agents) only ever run
--     INSERT INTO agent_events (task_id, session_id, event_type, content) VALUES (...);
--     UPDATE tasks SET status = '...' WHERE id = ...;
-- The triggers below do the rest: create the session row on its first event, assign `seq`
-- gaplessly in commit order per session, and notify listeners.

BEGIN;

-- 7_415_337 is an arbitrary constant: "taskstream schema" for pg_advisory_xact_lock.
SELECT pg_advisory_xact_lock(7415337);

CREATE TABLE IF NOT EXISTS tasks (
    id         text        PRIMARY KEY,
    title      text        NOT NULL DEFAULT '',
    status     text        NOT NULL DEFAULT 'Open',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE IF NOT EXISTS agent_sessions (
    id         text        PRIMARY KEY,
    task_id    text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- clock_timestamp(), not now(): two sessions started in one transaction still differ.
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The seq of the session's last event. Incrementing it takes the row lock that serialises
    -- the writers of one session until they commit, which is what makes `seq` gapless.
    last_seq   bigint      NOT NULL DEFAULT 0
);


CREATE TABLE IF NOT EXISTS agent_events (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id    text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    session_id text        NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    event_type text        NOT NULL,
    content    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (session_id, seq)
);

-- Keeps tasks.updated_at true without asking writers to set it.
CREATE OR REPLACE FUNCTION taskstream_touch_task() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Creates the session on its first event and assigns the event's seq. The upsert's row lock on
-- agent_sessions is held until commit, so a second writer of the same session waits here, and
-- seq grows in commit order with no holes (a rolled-back insert rolls its seq back too).
-- It deliberately never touches `tasks`: an UPDATE of the task here would deadlock with agents
-- that set the status and then insert, and would let one long transaction stall every session
-- of the task.
CREATE OR REPLACE FUNCTION taskstream_assign_seq() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    owner text;
BEGIN
    INSERT INTO agent_sessions AS s (id, task_id, last_seq)
    VALUES (NEW.session_id, NEW.task_id, 1)
    ON CONFLICT (id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING s.last_seq, s.task_id INTO NEW.seq, owner;
    IF owner <> NEW.task_id THEN
        RAISE EXCEPTION 'session % belongs to task %, not to task %',
            NEW.session_id, owner, NEW.task_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

-- pg_notify payloads must be shorter than 8000 bytes, or the writer's INSERT fails. The event
-- travels in the notification when it fits (octet_length: bytes, not characters); otherwise
-- only its address does and listeners read the row from the table; and when even the address
-- is too long (huge ids), an empty object tells listeners to re-check every task they watch.
CREATE OR REPLACE FUNCTION taskstream_notify_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    payload := json_build_object('t', NEW.task_id, 's', NEW.session_id, 'q', NEW.seq,
                                 'y', NEW.event_type, 'c', NEW.content)::text;
    IF octet_length(payload) >= 8000 THEN
        payload := json_build_object('t', NEW.task_id, 's', NEW.session_id, 'q', NEW.seq)::text;
        IF octet_length(payload) >= 8000 THEN
            payload := '{}';
        END IF;
    END IF;
    PERFORM pg_notify('taskstream_events', payload);
    RETURN NULL;
END
$$;

-- A status change or a deletion ends the task's open streams (after the events committed
-- before it). `k` is the kind: 's' status change, 'd' deletion.
CREATE OR REPLACE FUNCTION taskstream_notify_task() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        payload := json_build_object('k', 'd', 't', OLD.id)::text;
    ELSE
        payload := json_build_object('k', 's', 't', NEW.id, 'st', NEW.status)::text;
    END IF;
    IF octet_length(payload) >= 8000 THEN
        payload := '{}';
    END IF;
    PERFORM pg_notify('taskstream_tasks', payload);
    RETURN NULL;
END
$$;

-- Indexes and triggers are created only when missing: CREATE INDEX and CREATE/DROP TRIGGER
-- lock the table against writers, so re-applying the schema (another instance starting) must
-- not queue behind a writer's open transaction.
DO $$
BEGIN
    -- Lists tasks newest first (the viewer's index page).
    IF to_regclass('tasks_created_at') IS NULL THEN
        CREATE INDEX tasks_created_at ON tasks (created_at DESC, id);
    END IF;
    -- A task's latest session: the one whose first event was stored last, ties broken by id.
    IF to_regclass('agent_sessions_latest') IS NULL THEN
        CREATE INDEX agent_sessions_latest ON agent_sessions (task_id, started_at DESC, id DESC);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tasks_touch'
                   AND tgrelid = 'tasks'::regclass) THEN
        CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks
            FOR EACH ROW EXECUTE FUNCTION taskstream_touch_task();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tasks_notify_status'
                   AND tgrelid = 'tasks'::regclass) THEN
        CREATE TRIGGER tasks_notify_status AFTER UPDATE OF status ON tasks
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION taskstream_notify_task();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tasks_notify_delete'
                   AND tgrelid = 'tasks'::regclass) THEN
        CREATE TRIGGER tasks_notify_delete AFTER DELETE ON tasks
            FOR EACH ROW EXECUTE FUNCTION taskstream_notify_task();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'agent_events_assign_seq'
                   AND tgrelid = 'agent_events'::regclass) THEN
        CREATE TRIGGER agent_events_assign_seq BEFORE INSERT ON agent_events
            FOR EACH ROW EXECUTE FUNCTION taskstream_assign_seq();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'agent_events_notify'
                   AND tgrelid = 'agent_events'::regclass) THEN
        CREATE TRIGGER agent_events_notify AFTER INSERT ON agent_events
            FOR EACH ROW EXECUTE FUNCTION taskstream_notify_event();
    END IF;
END
$$;

COMMIT;
