"""The SQLite store never damages or loses data silently: other applications'
files are refused untouched, reads open the file read-only, layouts migrate in
append-only steps, a file deleted or replaced under a process is noticed."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import open_store
from orchestrion.errors import StoreError, StoreNotFound
from orchestrion.stores._sqlite_file import MIGRATIONS, SCHEMA_VERSION, V1
from orchestrion.stores.sqlite import SQLiteStore


def run(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, name="agent", status=RunStatus.RUNNING, created_at=1.0)


def entry(seq: int) -> Entry:
    return Entry(seq, f"agent/turn-{seq}/model", "model", StepStatus.COMPLETED, {"n": seq})


def fingerprint(path: Path) -> tuple[str, list[str]]:
    """The file's bytes and the names next to it (a -wal or -shm file is a change)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, sorted(p.name for p in path.parent.iterdir())


def foreign_db(path: Path, *, user_version: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("user_version", [0, 1, 7])
@pytest.mark.parametrize("read_only", [False, True])
def test_another_applications_database_is_refused_before_anything_changes(
    tmp_path: Path, user_version: int, read_only: bool
) -> None:
    path = tmp_path / "app.db"
    foreign_db(path, user_version=min(user_version, SCHEMA_VERSION))
    before = fingerprint(path)
    with pytest.raises(
        StoreError, match=r"not an orchestrion store.*invoices.*Nothing was changed"
    ):
        SQLiteStore(path, read_only=read_only)
    assert fingerprint(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # WAL not switched on
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    conn.close()


def test_a_missing_file_opened_for_reading_is_named_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "runs.db"
    with pytest.raises(StoreNotFound, match=f"{missing}: the file does not exist"):
        open_store(f"sqlite:///{missing}", read_only=True)
    assert not (tmp_path / "typo").exists()


async def test_a_read_only_store_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    writer = SQLiteStore(path)
    await writer.create_run(run("r1"), [entry(0)], owner="me")
    await writer.close()
    before = fingerprint(path)
    reader = open_store(f"sqlite:///{path}", read_only=True)
    got = await reader.get_run("r1")
    assert got is not None and got.lease is not None and got.lease.owner == "me"
    assert [r.id for r in await reader.list_runs()] == ["r1"]
    assert [e.seq for e in await reader.load("r1")] == [0]
    with pytest.raises(StoreError, match="read-only"):
        await reader.update_run("r1", status=RunStatus.CANCELLED)
    with pytest.raises(StoreError, match="read-only"):
        await reader.claim("r1", "thief")
    await reader.close()
    assert fingerprint(path)[0] == before[0]


async def test_a_file_of_layout_version_1_migrates_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in V1:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs VALUES ('old', 'agent', 'running', 1.0, 2.0, NULL, "
        '\'{"v": 2, "id": "old", "name": "agent", "status": "running", '
        '"updated_at": 2.0}\')'
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    reader = open_store(f"sqlite:///{path}", read_only=True)  # reads v1 without changing it
    old = await reader.get_run("old")
    assert old is not None and old.lease is None and old.token == 0
    assert old.orphaned_since(3.0) == 2.0  # running with no owner: a crash of old times
    await reader.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1

    store = SQLiteStore(path)
    claimed = await store.claim("old", "me")
    assert claimed.token == 1 and claimed.lease is not None
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert columns[-7:] == [
        "owner",
        "token",
        "lease_since",
        "lease_until",
        "queue",
        "priority",
        "attempts",
    ]
    conn.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_file_deleted_or_replaced_under_a_running_process_fails_loudly(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.create_run(run("r1"), owner="me")
    await store.append("r1", [entry(0)], durable=True, token=1)
    if how == "deleted":
        for p in tmp_path.iterdir():
            p.unlink()
    else:
        shutil.copy(path, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", path)
    with pytest.raises(StoreError, match=f"{path} was {how}"):
        await store.append("r1", [entry(1)], durable=True, token=1)
    with pytest.raises(StoreError, match=f"was {how}"):
        await store.update_run("r1", status=RunStatus.COMPLETED, token=1)
    await store.close()  # every failure was heard of


async def test_durable_writes_and_status_changes_are_fsynced_model_steps_are_not(
    tmp_path: Path,
) -> None:
    """What reaches `PRAGMA synchronous` before each commit (FULL fsyncs the WAL)."""
    # A private probe, on purpose: the level is a setting of the writer's own
    # connection (another connection reads its own), and whether a commit was
    # fsync'd shows only after a power cut, which a test cannot cause.
    store = SQLiteStore(tmp_path / "runs.db")
    levels: list[str] = []
    real = store._writer._set_synchronous

    def spy(conn: sqlite3.Connection, level: str) -> None:
        levels.append(level)
        real(conn, level)

    store._writer._set_synchronous = spy  # type: ignore[method-assign]
    await store.create_run(run("r1"), owner="me")  # a creation: not fsync'd
    await store.append("r1", [entry(0)], durable=False, token=1)  # a model step
    await store.load("r1")  # (waits for the batch above)
    await store.append("r1", [entry(1)], durable=True, token=1)  # a write tool's start
    await store.renew({"r1": 1})  # a heartbeat
    await store.update_run("r1", status=RunStatus.COMPLETED, token=1, release=True)
    await store.close()
    assert levels == ["NORMAL", "NORMAL", "FULL", "NORMAL", "FULL"]


async def test_a_refused_stale_write_nobody_heard_of_is_not_raised_at_close(tmp_path: Path) -> None:
    """The owner that lost its run stops; closing its store must not report the
    refusal as lost writes: the journal is whole, as the new owner wrote it."""
    store = SQLiteStore(tmp_path / "runs.db")
    await store.create_run(run("r1"), owner="me")
    await store.claim("r1", "other", steal=True)
    await store.append("r1", [entry(0)], durable=False, token=1)  # refused in the writer
    await store.close()


CLAIM_ONE = """
import asyncio, os, sys, time
from orchestrion.stores.sqlite import SQLiteStore

async def main() -> None:
    while not os.path.exists(sys.argv[3]):  # all start opening together
        time.sleep(0.001)
    store = SQLiteStore(sys.argv[1], busy_timeout=30)
    record = await store.claim("old", f"p{sys.argv[2]}", steal=True)
    print(record.token)
    await store.close()

asyncio.run(main())
"""


@pytest.mark.slow
def test_processes_opening_a_version_1_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Eight processes find layout version 1 together: one migrates under the lock,
    the others see it done; every claim gets its own token."""
    import subprocess
    import sys

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in V1:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs VALUES ('old', 'agent', 'running', 1.0, 2.0, NULL, "
        '\'{"v": 2, "id": "old", "name": "agent", "status": "running"}\')'
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_ONE, str(path), str(i), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    time.sleep(1.5)  # let them import and wait at the start line
    go.touch()
    outcomes = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert all(code == 0 for code, _, _ in outcomes), outcomes
    assert sorted(int(out) for _, out, _ in outcomes) == list(range(1, 9))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r[1] for r in conn.execute("PRAGMA table_info(runs)")].count("token") == 1
    conn.close()


def test_opening_waits_for_another_writer_before_switching_the_file_to_wal(
    tmp_path: Path,
) -> None:
    """Switching a file to WAL needs it to itself, and SQLite answers "database is
    locked" at once (no busy handler) while another process holds its write lock,
    e.g. while migrating it: the open waits that out, as `busy_timeout` promises."""
    import threading

    from orchestrion.stores._sqlite_file import open_file

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for statement in V1:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("BEGIN IMMEDIATE")  # another process's write transaction
    threading.Timer(0.3, lambda: conn.execute("COMMIT")).start()

    opened = open_file(str(path), busy_timeout=10, read_only=False)

    assert opened.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert opened.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    opened.conn.close()
    conn.close()
