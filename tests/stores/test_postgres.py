"""What the PostgreSQL store does beyond the conformance suite: its URL, its
schema migrations, its errors, and group commit. Against the local server
(`ORCHESTRION_TEST_POSTGRES`), each test in a schema of its own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrion.engine.journal import RunStatus
from orchestrion.engine.store import open_store
from orchestrion.errors import LeaseLost, StoreError, UserError
from orchestrion.stores._pg_schema import MIGRATIONS
from orchestrion.stores.postgres import PostgresStore

from ..conftest import POSTGRES_URL, drop_pg_schema, drop_schema
from .test_conformance import entry, run
from .test_queue import queued


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    await drop_pg_schema(name)


def test_the_url_gives_the_schema_and_pool_size_and_keeps_the_password_out() -> None:
    store = open_store("postgresql://app:s3cret-pw@db.internal:5433/prod?schema=team_a&pool_size=3")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size) == ("team_a", 3)
    assert "s3cret-pw" not in store.url + repr(store)
    assert isinstance(open_store("postgres://app@db/prod"), PostgresStore)


@pytest.mark.parametrize(
    ("query", "problem"),
    [("schema=a;drop", "not a plain identifier"), ("pool_size=many", "whole number")],
)
def test_a_bad_option_is_refused_naming_it(query: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        open_store(f"postgresql://app@db/prod?{query}")


async def test_a_server_that_is_down_is_named_without_the_password() -> None:
    store = open_store("postgresql://admin:pw-never-shown@127.0.0.1:1/test")
    with pytest.raises(StoreError, match=r"Cannot reach PostgreSQL at .*127\.0\.0\.1:1") as info:
        await store.get_run("r1")
    assert "pw-never-shown" not in str(info.value)


async def test_a_schema_newer_than_the_code_is_refused(schema: str) -> None:
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    await store.get_run("r1")  # creates the tables at the current version
    await store.close()
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".orchestrion_schema (version) VALUES ($1)', len(MIGRATIONS) + 1
        )
    finally:
        await conn.close()
    newer = open_store(f"{POSTGRES_URL}?schema={schema}")
    with pytest.raises(StoreError, match=r"newer than this orchestrion knows.*upgrade"):
        await newer.get_run("r1")


async def test_stores_opening_one_new_schema_at_once_migrate_it_once(schema: str) -> None:
    stores = [open_store(f"{POSTGRES_URL}?schema={schema}") for _ in range(6)]
    assert await asyncio.gather(*(s.get_run("r1") for s in stores)) == [None] * 6
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        versions = await conn.fetch(f'SELECT version FROM "{schema}".orchestrion_schema')
    finally:
        await conn.close()
    assert [v[0] for v in versions] == list(range(1, len(MIGRATIONS) + 1))
    for s in stores:
        await s.close()


async def test_concurrent_runs_appends_are_group_committed(schema: str) -> None:
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    assert isinstance(store, PostgresStore)
    runs, steps = 40, 10
    for r in range(runs):
        await store.create_run(run(f"run-{r}"))
    before = store.commits

    async def steps_of(r: int) -> None:
        for i in range(steps):
            await store.append(f"run-{r}", [entry(i)], durable=i == steps - 1)

    await asyncio.gather(*(steps_of(r) for r in range(runs)))
    for r in range(runs):
        assert [e.seq for e in await store.load(f"run-{r}")] == list(range(steps))
    assert store.commits - before < runs * steps / 4  # many appends share each commit
    await store.update_run("run-0", status=RunStatus.COMPLETED)
    await store.close()
    await drop_schema(store)


async def test_read_only_reads_an_existing_schema_and_creates_or_changes_nothing(
    schema: str,
) -> None:
    from orchestrion.errors import StoreNotFound

    missing = open_store(f"{POSTGRES_URL}?schema={schema}", read_only=True)
    with pytest.raises(StoreNotFound, match=rf"No orchestrion store in schema '{schema}'"):
        await missing.get_run("r1")
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        created = await conn.fetchval(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema
        )
    finally:
        await conn.close()
    assert created == 0, "a read-only open created the schema"

    writer = open_store(f"{POSTGRES_URL}?schema={schema}")
    await writer.create_run(run("r1"))
    await writer.close()
    reader = open_store(f"{POSTGRES_URL}?schema={schema}", read_only=True)
    got = await reader.get_run("r1")
    assert got is not None and got.id == "r1"
    with pytest.raises(StoreError, match="read-only"):
        await reader.update_run("r1", status=RunStatus.COMPLETED)
    await reader.close()


def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of run updates in each batched `UPDATE_RUNS` from now on, as made."""
    from orchestrion.stores import _pg_batch

    grouped: list[int] = []
    real = _pg_batch._update_all

    async def spy(conn: object, ops: list[object]) -> list[object]:
        grouped.append(len(ops))
        return await real(conn, ops)  # type: ignore[arg-type]

    monkeypatch.setattr(_pg_batch, "_update_all", spy)
    return grouped


async def test_a_batchs_run_updates_go_in_one_statement_and_a_stale_one_fails_alone(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs ending at once (a worker's) are updated by one statement, among their
    appends; a stale owner's update is refused alone, and two updates of one run in
    the batch apply in their order."""
    store = PostgresStore.from_url(f"{POSTGRES_URL}?schema={schema}")
    for r in range(5):
        await store.create_run(run(f"r{r}"))
    tokens = [(await store.claim(f"r{r}", "w")).token for r in range(5)]
    await store.claim("r4", "other", steal=True)  # r4's first owner is stale now
    grouped = batch_sizes(monkeypatch)
    outcomes = await asyncio.gather(
        *(
            store.update_run(f"r{r}", status=RunStatus.COMPLETED, output=r, token=tokens[r])
            for r in range(5)
        ),
        store.append("r1", [entry(0)], durable=False, token=tokens[1]),
        store.update_run("r0", status=RunStatus.FAILED, error={"why": "later"}, token=tokens[0]),
        return_exceptions=True,
    )
    assert outcomes[:4] == [None] * 4 and outcomes[5:] == [None, None]
    assert isinstance(outcomes[4], LeaseLost)
    assert grouped == [6]  # every update of the batch in one call: one statement
    records = [await store.get_run(f"r{r}") for r in range(5)]
    assert [r.status if r else None for r in records] == [
        RunStatus.FAILED,  # the second update of r0, applied after the first
        *[RunStatus.COMPLETED] * 3,
        RunStatus.RUNNING,  # the stale update changed nothing
    ]
    assert records[1] is not None and records[1].output == 1
    assert [e.seq for e in await store.load("r1")] == [0]
    await store.close()


async def test_a_run_refused_by_the_server_in_a_batch_fails_alone(schema: str) -> None:
    """One statement commits the runs whose appends fit; a run done append by append
    that the server refuses (here a NUL in a key, which no engine key holds) fails
    alone, and the committed run is not reported as failed."""
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    await store.create_run(run("a"))
    await store.create_run(run("b"))
    outcomes = await asyncio.gather(
        store.append("a", [entry(0)], durable=True),
        store.append("b", [entry(0, "bad\x00key")], durable=True),
        store.append("b", [entry(2)], durable=True),  # after a gap: b does not fit
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], StoreError) and isinstance(outcomes[2], StoreError)
    assert await store.load("a") == [entry(0)]
    await store.append("a", [entry(1)], durable=True)  # a goes on
    assert [e.seq for e in await store.load("a")] == [0, 1]
    with contextlib.suppress(StoreError):
        await store.close()


async def test_connections_killed_by_the_server_lose_nothing_and_the_run_goes_on(
    schema: str,
) -> None:
    store = open_store(f"{POSTGRES_URL}?schema={schema}")
    await store.create_run(run("r"))
    await store.append("r", [entry(0)], durable=True)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:  # as a server restart or a failover would
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            f"orchestrion {schema}",
        )
    finally:
        await admin.close()
    assert killed >= 1
    # The pool may notice the dead connection and take a new one, or the write may
    # meet it: either it went through, or it failed naming the server. Nothing is
    # lost or written twice, and the run goes on.
    try:
        await store.append("r", [entry(1)], durable=True)
        written = [0, 1]
    except StoreError as exc:
        assert "PostgreSQL" in str(exc)
        written = [0]
    assert [e.seq for e in await store.load("r")] == written  # what a resume reads
    if written == [0]:
        await store.append("r", [entry(1)], durable=True)  # on a new connection
    await store.append("r", [entry(2)], durable=True)
    assert [e.seq for e in await store.load("r")] == [0, 1, 2]
    await store.close()


class SlowListen:
    """The store's LISTEN connections, made 0.1 s late, and counted."""

    def __init__(self, store: PostgresStore) -> None:
        self.connecting = asyncio.Event()
        self.attempts = 0
        self.made: list[asyncpg.Connection] = []
        self._real = store._listen_connection
        store._listen_connection = self._connect  # type: ignore[method-assign]

    async def _connect(self) -> asyncpg.Connection:
        self.attempts += 1
        self.connecting.set()
        await asyncio.sleep(0.1)
        conn = await self._real()
        self.made.append(conn)
        return conn

    async def cut_off_a_wait(self, store: PostgresStore) -> None:
        """A wait for runs cut off while its connection is being made."""
        waiting = asyncio.create_task(store.wait_for_runs(["default"], 10))
        await self.connecting.wait()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_a_wait_cut_off_while_connecting_leaves_one_listen_connection(schema: str) -> None:
    """A worker's wait for runs is cut off whenever a slot frees first. When that
    happens while the LISTEN connection is being made, the connection is made
    anyway and the next wait uses it: one connection, none abandoned midway (asyncpg
    warns of those, and each is a backend started for nothing)."""
    store = PostgresStore.from_url(f"{POSTGRES_URL}?schema={schema}")
    listen = SlowListen(store)
    await listen.cut_off_a_wait(store)  # a slot freed first
    await store.wait_for_runs(["default"], 0.01)  # finds the connection made meanwhile

    async def queue_one() -> None:
        await asyncio.sleep(0.1)
        await store.create_run(queued("r1"))

    task = asyncio.create_task(queue_one())
    await asyncio.wait_for(store.wait_for_runs(["default"], 10), 5)  # heard, not timed out
    await task
    assert listen.attempts == 1 and len(listen.made) == 1
    await store.close()
    assert listen.made[0].is_closed()


async def test_closing_while_the_listen_connection_is_made_closes_it(schema: str) -> None:
    store = PostgresStore.from_url(f"{POSTGRES_URL}?schema={schema}")
    listen = SlowListen(store)
    await listen.cut_off_a_wait(store)
    await store.close()
    assert len(listen.made) == 1 and listen.made[0].is_closed()


async def test_a_batch_sets_a_runs_trace_only_where_it_has_none(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched `UPDATE_RUNS` keeps a trace context once set, as a single update does."""
    store = PostgresStore.from_url(f"{POSTGRES_URL}?schema={schema}")
    kept = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    given = "00-11111111111111111111111111111111-2222222222222222-01"
    await store.create_run(dataclasses.replace(run("r0"), trace=kept))
    for r in (1, 2):
        await store.create_run(run(f"r{r}"))
    grouped = batch_sizes(monkeypatch)
    await asyncio.gather(
        store.update_run("r0", status=RunStatus.RUNNING, trace=given),
        store.update_run("r1", status=RunStatus.RUNNING, trace=given),
        store.update_run("r2", status=RunStatus.RUNNING),
    )
    assert grouped == [3]  # one statement
    traces = [(await store.get_run(f"r{r}")).trace for r in range(3)]  # type: ignore[union-attr]
    assert traces == [kept, given, None]
    await store.close()
