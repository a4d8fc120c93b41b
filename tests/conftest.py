"""Shared fixtures: every engine test runs on each store; real model requests are forbidden."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrion import Runtime
from orchestrion.engine.store import Store, open_store
from orchestrion.testing import forbid_model_requests

forbid_model_requests()

STORE_KINDS = ["memory", "sqlite", "postgres"]
"""The stores every engine test and the store conformance suite run on. To add a
backend, add its kind here and its opening to `make_store`."""

POSTGRES_URL = os.environ.get(
    "ORCHESTRION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
"""A PostgreSQL database the tests may create schemas in (each test its own)."""


def make_store(kind: str, tmp_path: Path) -> Store:
    if kind == "memory":
        return open_store("memory://")
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'orchestrion.db'}")
    if kind == "postgres":
        return open_store(f"{POSTGRES_URL}?schema=test_{uuid.uuid4().hex[:16]}")
    raise ValueError(kind)


async def drop_schema(store: Store) -> None:
    """Remove a PostgreSQL test store's schema (its tables and rows)."""
    schema = getattr(store, "schema", None)
    if schema is not None:
        await drop_pg_schema(schema)


async def drop_pg_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A `Store` of each kind in turn (closed after the test). Tests of one
    backend alone name theirs differently (`sqlite_store`); a URL is `store_url`."""
    s = make_store(store_kind, tmp_path)
    yield s
    try:
        await s.close()
    finally:
        await drop_schema(s)


@pytest.fixture
async def runtime(store: Store) -> AsyncIterator[Runtime]:
    rt = Runtime(store)
    yield rt
    # The fixture owns the store; closing it twice is harmless.
    await rt.close()


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(params=["sqlite", "postgres"])
def process_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """For tests of real processes: a SQLite file, or a PostgreSQL schema of the
    test's own (dropped after it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    asyncio.run(drop_pg_schema(schema))
