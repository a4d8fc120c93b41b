"""What only the SQLite store promises: a real file, errors that say what to do, group commit."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import open_store
from orchestrion.errors import StoreError, UserError
from orchestrion.stores._sqlite_file import SCHEMA_VERSION
from orchestrion.stores.sqlite import SQLiteStore


def run(run_id: str, **fields: object) -> RunRecord:
    return RunRecord(id=run_id, name="agent", status=RunStatus.RUNNING, created_at=1.0, **fields)  # type: ignore[arg-type]


def entry(seq: int, result: object = None) -> Entry:
    return Entry(
        seq, f"agent/turn-{seq}/model", "model", StepStatus.COMPLETED, result or {"n": seq}
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def sqlite_store(db: Path) -> AsyncIterator[SQLiteStore]:
    """An `SQLiteStore` on `db` (closed after the test)."""
    s = SQLiteStore(db)
    yield s
    await s.close()


# -- files and URLs ----------------------------------------------------------


async def test_data_persists_after_close_and_reopen(db: Path) -> None:
    first = SQLiteStore(db)
    await first.create_run(run("run-1", idempotency_key="k"))
    for i in range(100):
        await first.append("run-1", [entry(i)], durable=False)  # never waited for
    await first.update_run("run-1", status=RunStatus.COMPLETED, output={"ok": True})
    await first.append("run-1", [entry(100)], durable=False)
    await first.close()

    second = SQLiteStore(db)
    try:
        got = await second.get_run("run-1")
        assert got is not None and got.status is RunStatus.COMPLETED and got.output == {"ok": True}
        assert [e.seq for e in await second.load("run-1")] == list(range(101))
        assert await second.find_run(idempotency_key="k") == got
        # The known run accepts appends from the new store at once.
        await second.append("run-1", [entry(101)], durable=False)
        assert len(await second.load("run-1")) == 102
    finally:
        await second.close()


async def test_writes_are_not_lost_when_the_process_exits_without_close(db: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
        from orchestrion.stores.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore({str(db)!r})
            await store.create_run(RunRecord(id="r", name="a", status=RunStatus.RUNNING))
            for i in range(500):
                entry = Entry(i, f"k{{i}}", "model", StepStatus.COMPLETED, {{"i": i}})
                await store.append("r", [entry], durable=False)

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = SQLiteStore(db)
    try:
        assert [e.seq for e in await store.load("r")] == list(range(500))
    finally:
        await store.close()


async def test_from_url_relative_path_creates_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store()  # the default: sqlite:///.orchestrion/orchestrion.db
    try:
        assert isinstance(store, SQLiteStore)
        assert store.url == "sqlite:///.orchestrion/orchestrion.db"
        await store.create_run(run("run-1"))
    finally:
        await store.close()
    assert (tmp_path / ".orchestrion" / "orchestrion.db").is_file()


async def test_from_url_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "runs.db"
    store = SQLiteStore.from_url(f"sqlite:///{path}")
    try:
        assert store.url == f"sqlite:////{str(path).lstrip('/')}"
    finally:
        await store.close()
    assert path.is_file()


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///", "sqlite://:memory:"])
def test_from_url_rejects_urls_without_a_file(url: str) -> None:
    with pytest.raises(UserError, match=re.escape("sqlite:///relative/path.db")):
        SQLiteStore.from_url(url)


def test_wal_mode_and_schema_version(db: Path) -> None:
    async def open_and_close() -> None:
        await SQLiteStore(db).close()

    asyncio.run(open_and_close())
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "journal"} <= tables
    finally:
        conn.close()


# -- errors that say what to do ----------------------------------------------


def test_corrupted_file_raises_store_error_naming_the_file(db: Path) -> None:
    db.write_bytes(b"this is not a database, just garbage \x00\xff" * 200)
    with pytest.raises(StoreError) as info:
        SQLiteStore(db)
    message = str(info.value)
    assert str(db) in message
    assert "not a SQLite database or is corrupted" in message
    assert "--store" in message


def test_unwritable_path_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "store.db"
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)
    assert "--store" in str(info.value)


def test_newer_layout_version_asks_for_an_upgrade(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="upgrade orchestrion"):
        SQLiteStore(db)


async def test_locked_database_raises_store_error(db: Path) -> None:
    await SQLiteStore(db).close()  # create the file
    conn = sqlite3.connect(db, isolation_level=None)
    store = SQLiteStore(db, busy_timeout=0.05)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked") as info:
            await store.create_run(run("run-1"))
        assert str(db) in str(info.value)
        conn.execute("ROLLBACK")
        # Once the lock is gone, the store works again.
        await store.create_run(run("run-1"))
        assert await store.get_run("run-1") is not None
    finally:
        await store.close()
        conn.close()


def journal_seqs(db: Path, run_id: str) -> list[int]:
    """The seqs of a run's journal as the file holds them, read by another connection."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT seq FROM journal WHERE run_id = ? ORDER BY seq", (run_id,))
        return [seq for (seq,) in rows]
    finally:
        conn.close()


@pytest.fixture
async def short(db: Path) -> AsyncIterator[SQLiteStore]:
    """A store that gives up on a lock quickly (0.05 s, then as long again in retries)."""
    s = SQLiteStore(db, busy_timeout=0.05)
    yield s
    await s.close()  # raises a failure no call heard of: each test hears of all of them


@pytest.fixture
def other(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the file ("another process"), to hold its write lock."""
    conn = sqlite3.connect(db, isolation_level=None)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


async def test_lost_writes_fail_their_own_run_and_leave_no_hole(
    db: Path, short: SQLiteStore, other: sqlite3.Connection
) -> None:
    store = short
    await store.create_run(run("a"))
    await store.create_run(run("b"))
    await store.append("a", [entry(0)], durable=True)
    other.execute("BEGIN EXCLUSIVE")  # held past the busy timeout and the retries
    await store.append("a", [entry(1)], durable=False)  # returns at once; its batch fails
    await store.append("a", [entry(2)], durable=False)  # queued behind it: must not commit
    # A call of another run, queued behind a's writes, is not told of a's failure.
    assert await store.get_run("b") is not None
    other.execute("ROLLBACK")
    await store.append("b", [entry(0)], durable=True)
    assert await store.load("b") == [entry(0)]
    assert journal_seqs(db, "a") == [0], "no hole: seq 2 was not written without seq 1"

    # a's next call hears of it, whatever it is, with what to do.
    with pytest.raises(StoreError) as info:
        await store.append("a", [entry(3)], durable=False)
    message = str(info.value)
    assert "Run 'a' lost writes" in message
    assert "'agent/turn-1/model' (seq 1)" in message, "names the first lost step"
    assert "locked by another process" in message and str(db) in message
    assert "`orchestrion resume a`" in message
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    # Its writes stay refused, so the run cannot complete over the lost entries.
    with pytest.raises(StoreError, match="Run 'a' lost writes"):
        await store.update_run("a", status=RunStatus.COMPLETED, output="done")
    with pytest.raises(StoreError, match="Run 'a' lost writes"):
        await store.append("a", [entry(3)], durable=True)
    got = await store.get_run("a")
    assert got is not None and got.status is RunStatus.RUNNING
    assert journal_seqs(db, "a") == [0]
    await store.append("b", [entry(1)], durable=False)  # b goes on
    await store.update_run("b", status=RunStatus.COMPLETED)

    # A resume: the load returns the saved prefix and clears the failure; the
    # appends continue it from its end.
    assert await store.load("a") == [entry(0)]
    await store.append("a", [entry(1, {"again": True})], durable=False)
    await store.append("a", [entry(2)], durable=False)
    await store.update_run("a", status=RunStatus.COMPLETED, output="done")
    assert await store.load("a") == [entry(0), entry(1, {"again": True}), entry(2)]
    assert journal_seqs(db, "b") == [0, 1]


async def test_a_durable_call_in_a_failed_batch_gets_its_own_runs_error(
    short: SQLiteStore, other: sqlite3.Connection
) -> None:
    store = short
    for run_id in ("a", "b", "c"):
        await store.create_run(run(run_id))
    other.execute("BEGIN EXCLUSIVE")
    await store.append("a", [entry(0)], durable=False)
    with pytest.raises(StoreError, match="Run 'b' lost writes") as info:
        await store.append("b", [entry(0)], durable=True)
    assert "'a'" not in str(info.value)
    other.execute("ROLLBACK")
    await store.append("c", [entry(0)], durable=True)  # c had nothing in the failed batch
    with pytest.raises(StoreError, match="Run 'a' lost writes"):
        await store.append("a", [entry(1)], durable=True)
    # b heard of it already; it stays refused until a load (a resume) of b.
    with pytest.raises(StoreError, match="Run 'b' lost writes"):
        await store.append("b", [entry(1)], durable=False)
    for run_id in ("a", "b"):
        assert await store.load(run_id) == []
        await store.append(run_id, [entry(0)], durable=True)
    assert [await store.load(r) for r in ("a", "b", "c")] == [[entry(0)]] * 3


async def test_a_load_raises_a_failure_not_heard_of_then_the_next_load_clears_it(
    short: SQLiteStore, other: sqlite3.Connection
) -> None:
    store = short
    await store.create_run(run("a"))
    await store.append("a", [entry(0)], durable=True)
    other.execute("BEGIN EXCLUSIVE")
    await store.append("a", [entry(1)], durable=False)
    assert await store.get_run("a") is not None  # a read of the record does not raise
    other.execute("ROLLBACK")
    with pytest.raises(StoreError, match=r"Run 'a' lost writes.*orchestrion resume a"):
        await store.load("a")
    assert await store.load("a") == [entry(0)]
    await store.append("a", [entry(1)], durable=True)
    assert await store.load("a") == [entry(0), entry(1)]


async def test_close_raises_a_failure_no_call_heard_of(db: Path, other: sqlite3.Connection) -> None:
    store = SQLiteStore(db, busy_timeout=0.05)
    await store.create_run(run("a"))
    other.execute("BEGIN EXCLUSIVE")
    await store.append("a", [entry(0)], durable=False)
    with pytest.raises(StoreError, match="Run 'a' lost writes"):
        await store.close()
    await store.close()  # reported once


async def test_a_lock_held_past_the_busy_timeout_but_within_the_retries_loses_nothing(
    db: Path, other: sqlite3.Connection
) -> None:
    # The first attempt gives up after 0.4 s; the lock goes at 0.6 s; the retries
    # go on until 0.8 s.
    store = SQLiteStore(db, busy_timeout=0.4)
    try:
        await store.create_run(run("a"))
        await store.create_run(run("b"))
        released = asyncio.Event()

        def release() -> None:
            other.execute("ROLLBACK")
            released.set()

        other.execute("BEGIN EXCLUSIVE")
        asyncio.get_running_loop().call_later(0.6, release)
        for i in range(5):
            await store.append("a", [entry(i)], durable=False)
        await store.append("b", [entry(0)], durable=True)  # waits through the retries
        assert released.is_set(), "the write waited out a lock held past its busy_timeout"
        await store.append("a", [entry(5)], durable=False)
        await store.update_run("a", status=RunStatus.COMPLETED)
        assert [e.seq for e in await store.load("a")] == list(range(6))
        assert await store.load("b") == [entry(0)]
    finally:
        await store.close()
    assert journal_seqs(db, "a") == list(range(6))


async def test_a_bad_write_fails_alone_in_its_group_commit(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create_run(run("a"))
    await sqlite_store.create_run(run("b"))
    await sqlite_store.append("a", [entry(0)], durable=False)
    await sqlite_store.append("a", [entry(0, {"dup": True})], durable=False)  # same seq: refused
    await sqlite_store.append("a", [entry(1)], durable=False)  # after a refused one: refused too
    await sqlite_store.append("b", [entry(0)], durable=False)
    await sqlite_store.append("b", [entry(1)], durable=True)  # b is not told of a's failure
    with pytest.raises(StoreError, match=r"run 'a'.*seq 0.*resumed twice at once"):
        await sqlite_store.update_run("a", status=RunStatus.COMPLETED)
    assert await sqlite_store.load("a") == [entry(0)]
    assert await sqlite_store.load("b") == [entry(0), entry(1)]


async def test_two_writers_of_one_run_are_told_it_is_resumed_twice(db: Path) -> None:
    first, second = SQLiteStore(db), SQLiteStore(db)
    try:
        await first.create_run(run("a"))
        await second.append("a", [entry(0)], durable=True)
        await first.append("a", [entry(1)], durable=True)
        # `second` expects seq 1 next; the file has it: the insert itself conflicts.
        with pytest.raises(StoreError, match=r"run 'a'.*at seq 1.*resumed twice at once"):
            await second.append("a", [entry(1, {"second": True})], durable=True)
        with pytest.raises(StoreError, match="resumed twice at once"):
            await second.append("a", [entry(2)], durable=False)  # refused until a load
        # A third writer that never saw the run checks against the file.
        third = SQLiteStore(db)
        try:
            with pytest.raises(StoreError, match=r"at seq 0.*resumed twice at once"):
                await third.append("a", [entry(0)], durable=True)
        finally:
            await third.close()
        await first.append("a", [entry(2)], durable=False)
        assert await first.load("a") == [entry(0), entry(1), entry(2)]
        assert await second.load("a") == [entry(0), entry(1), entry(2)]  # clears
        await second.append("a", [entry(3)], durable=True)
        assert [e.seq for e in await first.load("a")] == [0, 1, 2, 3]
    finally:
        await first.close()
        await second.close()


async def test_idempotency_keys_are_unique(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create_run(run("a", idempotency_key="k"))
    with pytest.raises(StoreError, match="idempotency key 'k' is already used by run 'a'"):
        await sqlite_store.create_run(run("b", idempotency_key="k"))
    assert await sqlite_store.get_run("b") is None


async def test_value_that_is_not_json_is_rejected_before_queueing(
    sqlite_store: SQLiteStore,
) -> None:
    await sqlite_store.create_run(run("a"))
    with pytest.raises(StoreError, match="not JSON"):
        await sqlite_store.append("a", [entry(0, {"when": object()})], durable=False)
    with pytest.raises(StoreError, match="not JSON"):
        await sqlite_store.update_run("a", status=RunStatus.COMPLETED, output=object())
    assert await sqlite_store.load("a") == []


async def test_use_after_close_raises(db: Path) -> None:
    store = SQLiteStore(db)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("x")


# -- group commit --------------------------------------------------------------


async def test_group_commit_batches_appends(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create_run(run("a"))
    before = sqlite_store.commits
    n = 1000
    for i in range(n):
        await sqlite_store.append("a", [entry(i)], durable=False)
    await sqlite_store.append("a", [entry(n)], durable=True)
    commits = sqlite_store.commits - before
    assert 1 <= commits <= n // 20, f"{n} appends took {commits} commits"
    assert len(await sqlite_store.load("a")) == n + 1


async def test_concurrent_durable_appends_share_commits(sqlite_store: SQLiteStore) -> None:
    for r in range(50):
        await sqlite_store.create_run(run(f"r{r}"))
    before = sqlite_store.commits

    async def worker(r: int) -> None:
        for i in range(10):
            await sqlite_store.append(f"r{r}", [entry(i)], durable=True)

    await asyncio.gather(*(worker(r) for r in range(50)))
    commits = sqlite_store.commits - before
    assert commits < 500 // 5, f"500 durable appends from 50 tasks took {commits} commits"


# -- data, not code (the encoders themselves: tests/test_json.py) ----------------


async def test_rows_hold_plain_json_text(db: Path) -> None:
    store = SQLiteStore(db)
    await store.create_run(run("a", input={"q": "ü"}), [entry(0)])
    await store.append("a", [entry(1)], durable=True)
    await store.close()
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT data FROM runs UNION ALL SELECT data FROM journal").fetchall()
        assert len(rows) == 3
        for (data,) in rows:
            assert isinstance(data, str)
            assert isinstance(json.loads(data), dict)
        assert json.loads(rows[0][0])["input"] == {"q": "ü"}
    finally:
        conn.close()
