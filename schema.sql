-- taskstream schema: the single source of truth that `taskstream migrate`, the server (with
-- --migrate true), the tests, `cargo run` and the benchmark all apply as is. psql can apply it
-- too: `psql -v ON_ERROR_STOP=1 -f schema.sql`.
--
-- Writers (agents, login roles granted `taskstream_writer`) only ever run
--     INSERT INTO tasks (id, title, status) VALUES (...);
--     INSERT INTO agent_events (task_id, session_id, event_type, content) VALUES (...);
--     UPDATE tasks SET status = '...' WHERE id = ...;
-- The triggers below do the rest: create the session row on its first event, assign `seq`
-- gaplessly in commit order per session, and send authenticated notifications.
--
-- VERSIONS. The two `SET` lines below are this file's schema version and its `min_reader`: the
-- oldest schema version a taskstream binary may be built for and still serve a database at this
-- version (read its tables, understand its notifications). taskstream reads both numbers from
-- these lines (src/db/schema.rs); the database records them in `taskstream_schema` once a
-- migration has completed. taskstream applies this file only to a database whose recorded
-- version is lower, and never downward.
--   1  the schema before versioned migrations (no `taskstream_schema` table)
--   2  roles and grants, SECURITY DEFINER trigger functions, notifications authenticated with
--      HMAC-SHA256, the address-only payload mode, rules for ids
--   3  taskstream_idempotency: the Idempotency-Key answers of the JSON API, the servers' alone
--   4  notifications for the live task list: a task created (`k` 'c'), retitled ('t'), or given
--      a new session ('n'), on taskstream_tasks in the same signed envelope (readers at
--      version 2 take them as a status change: a harmless re-read)
--
-- ADDING A STEP (a table, a column, a constraint, a trigger, a grant): bump the version, and
-- write the step so that it can run again on a database that already has it:
--   - a table: CREATE TABLE IF NOT EXISTS in phase 1, then its grants in the grants block;
--     a column: ALTER TABLE ... ADD COLUMN IF NOT EXISTS;
--   - a CHECK constraint: a row in the constraints list (added NOT VALID, validated in phase 2;
--     say in the README what happens to existing rows that break it);
--   - a trigger: a row in the triggers list (it is replaced when its definition changes);
--   - a function: CREATE OR REPLACE; helpers lose EXECUTE for PUBLIC by themselves.
-- Raise min_reader only when older binaries can no longer read the tables or the payloads: the
-- notification envelope `<mac>.<json>`, its MAC input and the JSON fields that exist must stay.
--
-- HOW IT RUNS. Three transactions, each under the same advisory lock, so several processes may
-- apply it at once. taskstream runs it with a short lock_timeout and retries the whole file when
-- a lock is not granted in time (every step is idempotent), so a migration never stalls writers
-- behind an open transaction for long.
--   phase 0  the group roles (cluster-wide, so committed on their own);
--   phase 1  tables, constraints (NOT VALID), functions, triggers, grants;
--   phase 2  existing rows that break a new constraint are fixed, every constraint is
--            validated (without blocking writers), and the version is recorded.
-- Progress is reported with `RAISE NOTICE 'taskstream: ...'`, which `taskstream migrate` prints.

SET taskstream.schema_version = 4;
SET taskstream.min_reader = 2;

-- ============================================================================================
-- Phase 0: the group roles. Both are NOLOGIN; an operator grants them to login roles (see the
-- README, "Database roles"). Roles are cluster-wide: two databases of one cluster may be
-- migrated at once, so a role created meanwhile by the other is not an error.
-- ============================================================================================
BEGIN;
DO $$
DECLARE
    role_name text;
    missing text[] := ARRAY(
        SELECT r FROM unnest(ARRAY['taskstream_server', 'taskstream_writer']) AS r
        WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r));
BEGIN
    FOREACH role_name IN ARRAY missing LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            RAISE NOTICE 'taskstream: created role %', role_name;
        EXCEPTION
            -- Created meanwhile by the migration of another database of this cluster.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'taskstream needs the roles %, and % may not create roles',
                    array_to_string(missing, ' and '), current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Create them once as a role with CREATEROLE: '
                              || (SELECT string_agg(format('CREATE ROLE %I NOLOGIN;', m), ' ')
                                  FROM unnest(missing) AS m);
        END;
    END LOOP;
END
$$;
COMMIT;

-- ============================================================================================
-- Phase 1: tables, constraints, functions, triggers and grants.
-- ============================================================================================
BEGIN;

-- 7_415_337 is an arbitrary constant: "taskstream schema" for pg_advisory_xact_lock.
SELECT pg_advisory_xact_lock(7415337);

-- Never downward: a database migrated by a newer taskstream keeps its schema.
DO $$
DECLARE
    recorded integer;
BEGIN
    IF to_regclass('taskstream_schema') IS NOT NULL THEN
        SELECT version INTO recorded FROM taskstream_schema;
        IF recorded > current_setting('taskstream.schema_version')::integer THEN
            RAISE EXCEPTION 'the database''s taskstream schema is version %, newer than this '
                'schema.sql (version %): a schema is never migrated downward',
                recorded, current_setting('taskstream.schema_version')
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END IF;
END
$$;

-- pgcrypto's hmac() authenticates notifications. It ships with PostgreSQL and is a trusted
-- extension (13+): a database owner may create it. If it is installed already, in whatever
-- schema, that copy is used.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgcrypto') THEN
        CREATE EXTENSION pgcrypto;
        RAISE NOTICE 'taskstream: created extension pgcrypto';
    END IF;
EXCEPTION
    WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
        RAISE EXCEPTION 'taskstream needs the pgcrypto extension, and cannot create it: %', SQLERRM
            USING ERRCODE = SQLSTATE,
                  HINT = 'Run CREATE EXTENSION pgcrypto; as the database owner (on Debian, '
                      'pgcrypto comes with the postgresql package).';
END
$$;

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

-- The version of the schema and the oldest reader that can serve it (one row, written at the
-- end of phase 2). Read by every server at start.
CREATE TABLE IF NOT EXISTS taskstream_schema (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version     integer     NOT NULL,
    min_reader  integer     NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now()
);

-- The notification key and the payload mode (one row). Only the owner and taskstream_server
-- may read it: whoever can read the key can forge notifications.
CREATE TABLE IF NOT EXISTS taskstream_notify_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- HMAC-SHA256 key of every notification, drawn once.
    mac_key   bytea   NOT NULL DEFAULT gen_random_bytes(32) CHECK (octet_length(mac_key) >= 32),
    -- 'event': an event's notification carries the event when it fits; 'address': only its
    -- address (task, session, seq), for databases shared with roles that must not read agent
    -- events (every LISTENer reads every payload). Set with `taskstream migrate --notify-payload`.
    payload   text    NOT NULL DEFAULT 'event' CHECK (payload IN ('event', 'address'))
);
INSERT INTO taskstream_notify_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

-- (schema 3) The answers of the JSON API's idempotent writes: a POST with an Idempotency-Key
-- stores its key here inside the write's own transaction, so a retry (on any instance) finds
-- the first answer, and a request racing it waits on the key's index entry until the first
-- commits or rolls back. Only taskstream_server may touch it (see the grants): an agent that
-- could write here could poison another task's keys. No foreign key: a key outlives nothing
-- it names, and the servers prune rows older than their --idempotency-window.
CREATE TABLE IF NOT EXISTS taskstream_idempotency (
    task_id    text        NOT NULL,
    key        text        NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused (422).
    body_hash  bytea       NOT NULL,
    -- The first answer, replayed as it was.
    status     smallint    NOT NULL,
    response   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, key)
);

-- Rules for ids. Each is added NOT VALID when missing (only a brief lock: existing rows are not
-- scanned, new and updated rows are checked at once) and validated in phase 2.
--   - No control character (C0 or DEL) in task or session ids: ids travel in URLs, headers,
--     logs and terminals.
--   - `*` is never a task id: it is the wildcard of a token's `tasks` claim, so a token issuer
--     that copies task ids into claims can never grant every task by accident.
-- Phase 2 renames existing ids that break them (see taskstream_fixed_id).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM (VALUES
        ('tasks', 'tasks_id_rules', $c$CHECK (id !~ '[\x01-\x1f\x7f]' AND id <> '*')$c$),
        ('agent_sessions', 'agent_sessions_id_rules', $c$CHECK (id !~ '[\x01-\x1f\x7f]')$c$)
    ) AS v (tbl, name, definition)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conname = c.name AND conrelid = c.tbl::regclass) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s NOT VALID',
                           c.tbl, c.name, c.definition);
            RAISE NOTICE 'taskstream: added constraint % on %', c.name, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes are created only when missing: CREATE INDEX locks the table against writers.
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
    -- Pruning expired idempotency keys (schema 3).
    IF to_regclass('taskstream_idempotency_created_at') IS NULL THEN
        CREATE INDEX taskstream_idempotency_created_at ON taskstream_idempotency (created_at);
    END IF;
END
$$;

-- The trigger functions are SECURITY DEFINER: writers have no rights on agent_sessions or on
-- the key, and must not choose seq or sign payloads themselves. Each gets
-- `SET search_path = pg_catalog, <this schema>, pg_temp` below; pg_temp is explicitly last, or
-- a writer's temporary table named agent_sessions would take the trigger's writes.

-- Keeps tasks.updated_at true without asking writers to set it.
CREATE OR REPLACE FUNCTION taskstream_touch_task() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
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
-- A session belongs to one task. An event naming a session of another task is refused with
-- unique_violation (23505) on agent_sessions_pkey: the session id is taken. A missing task is
-- a foreign_key_violation (23503), so the two can be told apart (409 and 404 over HTTP). The
-- message does not name the other task.
CREATE OR REPLACE FUNCTION taskstream_assign_seq() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    owner text;
BEGIN
    INSERT INTO agent_sessions AS s (id, task_id, last_seq)
    VALUES (NEW.session_id, NEW.task_id, 1)
    ON CONFLICT (id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING s.last_seq, s.task_id INTO NEW.seq, owner;
    IF owner <> NEW.task_id THEN
        RAISE EXCEPTION 'session % belongs to another task than %', NEW.session_id, NEW.task_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'agent_sessions_pkey',
                  TABLE = 'agent_sessions';
    END IF;
    RETURN NEW;
END
$$;

-- Notifications are `<mac>.<json>`: the MAC is HMAC-SHA256 (pgcrypto's hmac()) keyed by
-- taskstream_notify_settings.mac_key, over `<channel>:<json>` exactly as sent (the channel is
-- in it so that a payload cannot be replayed on the other channel), base64 (44 characters).
-- Anyone may NOTIFY on these channels; without the key, nobody can make a payload servers
-- accept. Created below with pgcrypto's schema named, wherever pgcrypto is installed.
DO $$
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION taskstream_signed(channel text, payload text, key bytea)
        RETURNS text LANGUAGE sql STABLE AS $body$
            SELECT pg_catalog.encode(%I.hmac(pg_catalog.convert_to(channel || ':' || payload,
                                                                   'UTF8'),
                                             key, 'sha256'), 'base64')
                   || '.' || payload
        $body$ $f$,
        (SELECT n.nspname FROM pg_catalog.pg_extension e
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'));
END
$$;

-- pg_notify payloads must be shorter than 8000 bytes, or the writer's INSERT fails; the
-- signature takes 45 of them. The event travels in the notification when it fits
-- (octet_length: bytes, not characters) and the payload mode is 'event'; otherwise only its
-- address does and listeners read the row from the table; and when even the address is too
-- long (huge ids), an empty object tells listeners to re-check every task they watch.
-- `a` is the session's started_at in microseconds: with the session id it names one
-- incarnation of a session, so a replayed notification of an older session (or of a deleted
-- one whose id was reused) is recognised as old.
CREATE OR REPLACE FUNCTION taskstream_notify_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    settings taskstream_notify_settings%ROWTYPE;
    started bigint;
    payload text;
BEGIN
    SELECT * INTO settings FROM taskstream_notify_settings;
    SELECT (extract(epoch FROM s.started_at) * 1000000)::int8 INTO started
    FROM agent_sessions s WHERE s.id = NEW.session_id;
    IF settings.payload = 'event' THEN
        payload := json_build_object('t', NEW.task_id, 's', NEW.session_id, 'a', started,
                                     'q', NEW.seq, 'y', NEW.event_type, 'c', NEW.content)::text;
    END IF;
    IF payload IS NULL OR octet_length(payload) + 45 >= 8000 THEN
        payload := json_build_object('t', NEW.task_id, 's', NEW.session_id, 'a', started,
                                     'q', NEW.seq)::text;
        IF octet_length(payload) + 45 >= 8000 THEN
            payload := '{}';
        END IF;
    END IF;
    PERFORM pg_notify('taskstream_events',
                      taskstream_signed('taskstream_events', payload, settings.mac_key));
    RETURN NULL;
END
$$;

-- Task notifications. A status change or a deletion ends the task's open streams (after the
-- events committed before it): `k` 's' status change (`st` the new status, left out in the
-- address-only mode), 'd' deletion. The live task list (`GET /tasks` as a stream) also hears of
-- a task created ('c'), retitled ('t', the tasks_notify_title trigger), or given a new session
-- ('n': the first event's upsert inserts the session row once; later events update it, which
-- fires no INSERT trigger, so the event insert path gains nothing). Receivers re-read the
-- task's row: the payload is never trusted for content, and NOTIFY folds identical payloads
-- within one transaction anyway.
CREATE OR REPLACE FUNCTION taskstream_notify_task() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    settings taskstream_notify_settings%ROWTYPE;
    payload text;
BEGIN
    SELECT * INTO settings FROM taskstream_notify_settings;
    IF TG_OP = 'DELETE' THEN
        payload := json_build_object('k', 'd', 't', OLD.id)::text;
    ELSIF TG_TABLE_NAME = 'agent_sessions' THEN
        payload := json_build_object('k', 'n', 't', NEW.task_id)::text;
    ELSIF TG_OP = 'INSERT' THEN
        payload := json_build_object('k', 'c', 't', NEW.id)::text;
    ELSIF TG_NAME = 'tasks_notify_title' THEN
        payload := json_build_object('k', 't', 't', NEW.id)::text;
    ELSIF settings.payload = 'event' THEN
        payload := json_build_object('k', 's', 't', NEW.id, 'st', NEW.status)::text;
    ELSE
        payload := json_build_object('k', 's', 't', NEW.id)::text;
    END IF;
    IF octet_length(payload) + 45 >= 8000 THEN
        payload := '{}';
    END IF;
    PERFORM pg_notify('taskstream_tasks',
                      taskstream_signed('taskstream_tasks', payload, settings.mac_key));
    RETURN NULL;
END
$$;

-- The id that phase 2 gives an existing task or session whose id breaks the rules above: each
-- control character becomes `\x` and its two hex digits, and a task id `*` becomes `\x2a`.
CREATE OR REPLACE FUNCTION taskstream_fixed_id(id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN id = '*' THEN '\x2a' ELSE coalesce((
        SELECT string_agg(CASE WHEN c ~ '[\x01-\x1f\x7f]'
                               THEN '\x' || lpad(to_hex(ascii(c)), 2, '0') ELSE c END,
                          '' ORDER BY n)
        FROM regexp_split_to_table(id, '') WITH ORDINALITY AS chars (c, n)), '') END
$$;

-- Every function of taskstream: no EXECUTE for PUBLIC (trigger functions run for the writers
-- anyway; helpers are only for the owner), and the trigger functions get the fixed
-- search_path with pg_temp last.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS signature, p.prosecdef
             FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = current_schema()::regnamespace
               AND p.proname LIKE 'taskstream\_%'
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.signature);
        IF f.prosecdef THEN
            EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                           f.signature, current_schema());
        END IF;
    END LOOP;
END
$$;

-- Triggers: each is created when missing and replaced when its definition changed. The
-- definition is kept as the trigger's comment (triggers created before versioned migrations
-- have none, so they are replaced once). Replacing a trigger locks its table against writers
-- briefly, so it happens only then.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('tasks', 'tasks_touch',
         'BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION taskstream_touch_task()'),
        ('tasks', 'tasks_notify_status',
         'AFTER UPDATE OF status ON tasks FOR EACH ROW '
         'WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION taskstream_notify_task()'),
        ('tasks', 'tasks_notify_delete',
         'AFTER DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION taskstream_notify_task()'),
        ('tasks', 'tasks_notify_insert',
         'AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION taskstream_notify_task()'),
        ('tasks', 'tasks_notify_title',
         'AFTER UPDATE OF title ON tasks FOR EACH ROW '
         'WHEN (OLD.title IS DISTINCT FROM NEW.title) EXECUTE FUNCTION taskstream_notify_task()'),
        ('agent_sessions', 'agent_sessions_notify',
         'AFTER INSERT ON agent_sessions FOR EACH ROW EXECUTE FUNCTION taskstream_notify_task()'),
        ('agent_events', 'agent_events_assign_seq',
         'BEFORE INSERT ON agent_events FOR EACH ROW EXECUTE FUNCTION taskstream_assign_seq()'),
        ('agent_events', 'agent_events_notify',
         'AFTER INSERT ON agent_events FOR EACH ROW EXECUTE FUNCTION taskstream_notify_event()')
    ) AS v (tbl, name, definition)
    LOOP
        IF (SELECT obj_description(oid, 'pg_trigger') FROM pg_catalog.pg_trigger
            WHERE tgname = t.name AND tgrelid = t.tbl::regclass) IS DISTINCT FROM t.definition
        THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I %s', t.name, t.definition);
            EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', t.name, t.tbl, t.definition);
            RAISE NOTICE 'taskstream: set trigger % on %', t.name, t.tbl;
        END IF;
    END LOOP;
END
$$;

-- Grants. The two roles get exactly these rights (everything else they were granted on these
-- tables is revoked): grant more to login roles, not to the group roles. Writers get no right
-- to choose id, seq or created_at, to change or delete events, to touch agent_sessions, or to
-- delete tasks (deleting a task deletes all its events; that is an operator's retention job).
-- Column SELECT on tasks.id is what `UPDATE tasks SET status = ... WHERE id = ...` needs.
REVOKE ALL ON tasks, agent_sessions, agent_events, taskstream_schema, taskstream_notify_settings
    FROM PUBLIC, taskstream_server, taskstream_writer;
GRANT SELECT ON tasks, agent_sessions, agent_events, taskstream_schema, taskstream_notify_settings
    TO taskstream_server;
GRANT INSERT (id, title, status), UPDATE (title, status), SELECT (id) ON tasks
    TO taskstream_writer;
GRANT INSERT (task_id, session_id, event_type, content) ON agent_events TO taskstream_writer;
-- (schema 3) The servers' idempotency keys: taskstream_server alone, never taskstream_writer.
REVOKE ALL ON taskstream_idempotency FROM PUBLIC, taskstream_server, taskstream_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON taskstream_idempotency TO taskstream_server;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO taskstream_server, taskstream_writer',
                   current_schema());
    -- A writer that may create objects in this schema could shadow a function the triggers
    -- call. PostgreSQL 15 and later grant PUBLIC no CREATE on `public`; older databases do.
    IF has_schema_privilege('taskstream_writer', current_schema(), 'CREATE') THEN
        RAISE WARNING 'taskstream: writers may create objects in schema %; run REVOKE CREATE ON SCHEMA % FROM PUBLIC',
            current_schema(), quote_ident(current_schema());
    END IF;
END
$$;

COMMIT;

-- ============================================================================================
-- Phase 2: existing rows that break a constraint are fixed, every constraint is validated,
-- and the version is recorded. VALIDATE does not block writers (SHARE UPDATE EXCLUSIVE), and
-- rows written since phase 1 were checked already.
-- ============================================================================================
BEGIN;
SELECT pg_advisory_xact_lock(7415337);

-- Existing ids that break the rules are renamed (see taskstream_fixed_id), with their events
-- (and a task with its sessions); a renamed task's open streams end with `complete`, and a
-- renamed session's streams restart it from the beginning. Sessions go first: moving a
-- session to a renamed task re-checks the session's own id. A new id that is taken stops the
-- migration with both ids named. Ids are shown as JSON strings, so control characters are
-- escaped.
DO $$
DECLARE
    old_id text;
    new_id text;
BEGIN
    FOR old_id IN SELECT id FROM agent_sessions WHERE id ~ '[\x01-\x1f\x7f]' LOOP
        new_id := taskstream_fixed_id(old_id);
        BEGIN
            INSERT INTO agent_sessions (id, task_id, started_at, last_seq)
            SELECT new_id, task_id, started_at, last_seq FROM agent_sessions WHERE id = old_id;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'cannot rename session % to %: a session with that id exists',
                to_json(old_id), to_json(new_id)
                USING HINT = 'rename or delete one of them, then run taskstream migrate again';
        END;
        UPDATE agent_events SET session_id = new_id WHERE session_id = old_id;
        DELETE FROM agent_sessions WHERE id = old_id;
        RAISE NOTICE 'taskstream: renamed session % to %', to_json(old_id), new_id;
    END LOOP;
    FOR old_id IN SELECT id FROM tasks WHERE id ~ '[\x01-\x1f\x7f]' OR id = '*' LOOP
        new_id := taskstream_fixed_id(old_id);
        BEGIN
            INSERT INTO tasks (id, title, status, created_at, updated_at)
            SELECT new_id, title, status, created_at, updated_at FROM tasks WHERE id = old_id;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'cannot rename task % to %: a task with that id exists',
                to_json(old_id), to_json(new_id)
                USING HINT = 'rename or delete one of them, then run taskstream migrate again';
        END;
        UPDATE agent_sessions SET task_id = new_id WHERE task_id = old_id;
        UPDATE agent_events SET task_id = new_id WHERE task_id = old_id;
        DELETE FROM tasks WHERE id = old_id;
        RAISE NOTICE 'taskstream: renamed task % to %', to_json(old_id), new_id;
    END LOOP;
END
$$;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS tbl, conname FROM pg_catalog.pg_constraint
             WHERE NOT convalidated
               AND conrelid IN ('tasks'::regclass, 'agent_sessions'::regclass,
                                'agent_events'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', c.tbl, c.conname);
        RAISE NOTICE 'taskstream: validated constraint % on %', c.conname, c.tbl;
    END LOOP;
END
$$;

INSERT INTO taskstream_schema (version, min_reader)
VALUES (current_setting('taskstream.schema_version')::integer,
        current_setting('taskstream.min_reader')::integer)
ON CONFLICT (singleton) DO UPDATE
    SET version = EXCLUDED.version, min_reader = EXCLUDED.min_reader, migrated_at = now()
    WHERE taskstream_schema.version < EXCLUDED.version;

COMMIT;
