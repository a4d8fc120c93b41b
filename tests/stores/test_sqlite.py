"""What only the SQLite store promises: a real file, errors that say what to do, group commit."""

from __future__ import annotations

import ast
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

import orchestrion.stores.sqlite as sqlite_module
from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import open_store
from orchestrion.errors import StoreError, UserError
from orchestrion.stores.sqlite import SCHEMA_VERSION, SQLiteStore


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
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db)
    yield s
    await s.close()


@pytest.fixture
def locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()


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


async def test_failed_non_durable_append_surfaces_at_the_next_call(db: Path) -> None:
    store = SQLiteStore(db, busy_timeout=0.05)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        await store.create_run(run("run-1"))
        conn.execute("BEGIN EXCLUSIVE")
        await store.append("run-1", [entry(0)], durable=False)  # returns at once
        with pytest.raises(StoreError, match=r"An earlier write failed.*locked"):
            await store.get_run("run-1")  # a read that itself succeeds
        conn.execute("ROLLBACK")
        # Reported once, then the store goes on.
        assert await store.get_run("run-1") is not None
    finally:
        await store.close()
        conn.close()


async def test_a_bad_write_fails_alone_in_its_group_commit(store: SQLiteStore) -> None:
    await store.create_run(run("a"))
    await store.create_run(run("b"))
    await store.append("a", [entry(0)], durable=False)
    await store.append("a", [entry(0, {"dup": True})], durable=False)  # same seq: rejected
    await store.append("b", [entry(0)], durable=False)
    with pytest.raises(StoreError, match=r"run 'a'.*seq"):
        await store.append("b", [entry(1)], durable=True)
    assert await store.load("a") == [entry(0)]
    assert await store.load("b") == [entry(0), entry(1)]


async def test_idempotency_keys_are_unique(store: SQLiteStore) -> None:
    await store.create_run(run("a", idempotency_key="k"))
    with pytest.raises(StoreError, match="idempotency key 'k'"):
        await store.create_run(run("b", idempotency_key="k"))
    assert await store.get_run("b") is None


async def test_value_that_is_not_json_is_rejected_before_queueing(store: SQLiteStore) -> None:
    await store.create_run(run("a"))
    with pytest.raises(StoreError, match="not JSON"):
        await store.append("a", [entry(0, {"when": object()})], durable=False)
    with pytest.raises(StoreError, match="not JSON"):
        await store.update_run("a", status=RunStatus.COMPLETED, output=object())
    assert await store.load("a") == []


async def test_use_after_close_raises(db: Path) -> None:
    store = SQLiteStore(db)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("x")


# -- group commit --------------------------------------------------------------


async def test_group_commit_batches_appends(store: SQLiteStore) -> None:
    await store.create_run(run("a"))
    before = store.commits
    n = 1000
    for i in range(n):
        await store.append("a", [entry(i)], durable=False)
    await store.append("a", [entry(n)], durable=True)
    commits = store.commits - before
    assert 1 <= commits <= n // 20, f"{n} appends took {commits} commits"
    assert len(await store.load("a")) == n + 1


async def test_concurrent_durable_appends_share_commits(store: SQLiteStore) -> None:
    for r in range(50):
        await store.create_run(run(f"r{r}"))
    before = store.commits

    async def worker(r: int) -> None:
        for i in range(10):
            await store.append(f"r{r}", [entry(i)], durable=True)

    await asyncio.gather(*(worker(r) for r in range(50)))
    commits = store.commits - before
    assert commits < 500 // 5, f"500 durable appends from 50 tasks took {commits} commits"


# -- data, not code ----------------------------------------------------------------


def test_module_never_imports_a_code_serialiser() -> None:
    tree = ast.parse(Path(sqlite_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle"}


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
