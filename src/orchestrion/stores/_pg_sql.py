"""The PostgreSQL store's statements (see `stores.postgres` and, for the tables,
`stores._pg_schema`)."""

RUN_COLUMNS = (
    "id, name, status, input, target, output, error, pending, created_at, updated_at, "
    "parent_id, fork_at, idempotency_key, usage, v, token, lease_owner, lease_since, lease_until, "
    "queue, priority, attempts, trace"
)

INSERT_RUN = (
    "INSERT INTO runs (id, name, status, input, target, output, error, pending, created_at, "
    "updated_at, parent_id, fork_at, idempotency_key, usage, v, token, lease_owner, "
    "lease_since, lease_until, next_seq, queue, priority, trace) VALUES ($1, $2, $3, $4::jsonb, "
    "$5, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, $17, "
    "$18, $19, $20, $21, $22, $23)"
)

INSERT_ENTRY = (
    "INSERT INTO journal (run_id, seq, key, kind, status, result, started_at, ended_at, v) "
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)"
)

APPEND_SPANS = """
WITH moved AS (
    UPDATE runs SET next_seq = span.next
    FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[]) AS span(id, token, first, next)
    WHERE runs.id = span.id AND runs.next_seq = span.first
        AND (span.token IS NULL OR runs.token = span.token)
    RETURNING runs.id
), added AS (
    INSERT INTO journal (run_id, seq, key, kind, status, result, started_at, ended_at, v)
    SELECT * FROM unnest($5::text[], $6::int[], $7::text[], $8::text[], $9::text[],
        $10::jsonb[], $11::float8[], $12::float8[], $13::int[])
        AS e(run_id, seq, key, kind, status, result, started_at, ended_at, v)
    WHERE e.run_id IN (SELECT id FROM moved)
)
SELECT id FROM moved
"""
"""Consecutive appends of several runs, in one statement (`PostgresStore._append_all`)."""

APPEND_ONE = """
WITH moved AS (
    UPDATE runs SET next_seq = $4
    WHERE id = $1 AND next_seq = $3 AND ($2::bigint IS NULL OR token = $2)
    RETURNING id
), added AS (
    INSERT INTO journal (run_id, seq, key, kind, status, result, started_at, ended_at, v)
    SELECT id, $5, $6, $7, $8, $9::jsonb, $10, $11, $12 FROM moved
)
SELECT count(*) FROM moved
"""
"""`APPEND_SPANS` for one entry of one run, with plain parameters."""

UPDATE_RUN = (
    "UPDATE runs SET status = $2, output = $3::jsonb, error = $4::jsonb, pending = $5::jsonb, "
    "usage = coalesce($6::jsonb, usage), updated_at = $7, "
    "lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END, "
    "lease_since = CASE WHEN $9 THEN NULL ELSE lease_since END, "
    "lease_until = CASE WHEN $9 THEN NULL ELSE lease_until END, "
    "attempts = CASE WHEN $9 THEN 0 ELSE attempts END, trace = coalesce(trace, $10) "
    "WHERE id = $1 AND ($8::bigint IS NULL OR token = $8) RETURNING token, queue"
)

UPDATE_RUNS = """
UPDATE runs SET status = u.status, output = u.output, error = u.error, pending = u.pending,
    usage = coalesce(u.usage, runs.usage), updated_at = u.updated_at,
    lease_owner = CASE WHEN u.release THEN NULL ELSE runs.lease_owner END,
    lease_since = CASE WHEN u.release THEN NULL ELSE runs.lease_since END,
    lease_until = CASE WHEN u.release THEN NULL ELSE runs.lease_until END,
    attempts = CASE WHEN u.release THEN 0 ELSE runs.attempts END,
    trace = coalesce(runs.trace, u.trace)
FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::jsonb[], $6::jsonb[],
    $7::float8[], $8::bigint[], $9::bool[], $10::text[])
    AS u(id, status, output, error, pending, usage, updated_at, token, release, trace)
WHERE runs.id = u.id AND (u.token IS NULL OR runs.token = u.token)
RETURNING runs.id, runs.token, runs.queue
"""
"""`UPDATE_RUN` for several runs (one each), in one statement (`_pg_batch`)."""
