"""The PostgreSQL store's tables, as versioned, append-only migrations.

`MIGRATIONS[i]` takes a database from version `i` to `i + 1`; a released one is
never edited, a change is a new one at the end. `migrate` applies what is missing
under an advisory lock (several processes may open one database at once), and
refuses a database whose version is newer than this code knows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrion.errors import StoreError, StoreNotFound

if TYPE_CHECKING:
    import asyncpg

MIGRATIONS: tuple[str, ...] = (
    # 1: runs and their journals. Payloads are jsonb; a run's lease and fencing
    # token are columns, so a claim, a renewal and a fenced write are one statement.
    """
    CREATE TABLE runs (
        id text PRIMARY KEY,
        name text NOT NULL,
        status text NOT NULL,
        input jsonb,
        target text,
        output jsonb,
        error jsonb,
        pending jsonb NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        parent_id text,
        fork_at text,
        idempotency_key text UNIQUE,
        usage jsonb NOT NULL,
        v integer NOT NULL,
        token bigint NOT NULL DEFAULT 0,
        lease_owner text,
        lease_since double precision,
        lease_until double precision,
        next_seq integer NOT NULL DEFAULT 0,
        created_order bigint GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX runs_newest ON runs (created_at DESC, created_order DESC);
    CREATE INDEX runs_by_status ON runs (status, created_at DESC, created_order DESC);
    CREATE TABLE journal (
        run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq integer NOT NULL,
        key text NOT NULL,
        kind text NOT NULL,
        status text NOT NULL,
        result jsonb,
        started_at double precision NOT NULL,
        ended_at double precision NOT NULL,
        v integer NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 2: circuit breakers shared by every worker on the database (see `_pg_breakers`).
    """
    CREATE TABLE breakers (
        name text PRIMARY KEY,
        state text NOT NULL DEFAULT 'closed',
        failures double precision[] NOT NULL DEFAULT '{}',
        opened_at double precision NOT NULL DEFAULT 0,
        round integer NOT NULL DEFAULT 0,
        reopened boolean NOT NULL DEFAULT false,
        admitted integer NOT NULL DEFAULT 0,
        successes integer NOT NULL DEFAULT 0
    );
    """,
    # 3: a queue of runs for workers (`stores._pg_queue`): highest priority first, then oldest.
    """
    ALTER TABLE runs ADD COLUMN queue text, ADD COLUMN priority integer NOT NULL DEFAULT 0,
        ADD COLUMN attempts integer NOT NULL DEFAULT 0;
    CREATE INDEX runs_queued ON runs (queue, priority DESC, created_at) WHERE status = 'queued';
    CREATE INDEX runs_unowned ON runs ((coalesce(lease_until, 0)))
        WHERE status = 'running' AND queue IS NOT NULL;
    """,
    # 4: rate-limit allowances shared by every worker (see `_pg_limits`).
    """
    CREATE TABLE rate_limits (
        key text PRIMARY KEY,
        requests double precision NOT NULL DEFAULT 0,
        tokens double precision NOT NULL DEFAULT 0,
        cost double precision NOT NULL DEFAULT 0,
        at double precision NOT NULL
    );
    """,
    # 5: the trace context a run's spans hang under (`RunRecord.trace`).
    "ALTER TABLE runs ADD COLUMN trace text;",
)

_LOCK = 0x6F72636865737472  # "orchestr": serialises migrations across processes


async def migrate(conn: asyncpg.Connection, schema: str) -> None:
    """Bring `schema` up to `len(MIGRATIONS)`, creating it if needed."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".orchestrion_schema '
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(
            f'SELECT coalesce(max(version), 0) FROM "{schema}".orchestrion_schema'
        )
        if current > len(MIGRATIONS):
            raise _newer(schema, current)
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        for version in range(current + 1, len(MIGRATIONS) + 1):
            await conn.execute(MIGRATIONS[version - 1])
            await conn.execute("INSERT INTO orchestrion_schema (version) VALUES ($1)", version)


async def check_version(conn: asyncpg.Connection, schema: str, where: str) -> None:
    """For a store opened read-only: `schema` holds orchestrion's tables at a version
    this code reads; nothing is created or changed."""
    current = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".orchestrion_schema'
    ) and await conn.fetchval(f'SELECT max(version) FROM "{schema}".orchestrion_schema')
    if not current:
        raise StoreNotFound(
            f"No orchestrion store in schema {schema!r} of {where}: nothing has run there "
            "yet. Check the URL's database and ?schema=, or run something on it first."
        )
    if current > len(MIGRATIONS):
        raise _newer(schema, current)


def _newer(schema: str, version: int) -> StoreError:
    return StoreError(
        f"The PostgreSQL schema {schema!r} is at version {version}, newer than this "
        f"orchestrion knows ({len(MIGRATIONS)}): upgrade orchestrion (pip install -U "
        "orchestrion) in every process that uses this database."
    )
