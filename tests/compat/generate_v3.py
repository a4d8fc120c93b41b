"""How the `v3/` corpus was made, kept as a record: never run it to replace those
files (a corpus is what an older orchestrion wrote; a later one must read it as
it is). It was run once, on the code of schema version 3, before the journal's
records were typed:

    PYTHONPATH=<v3 checkout>/src:. python -m tests.compat.generate_v3 tests/compat/v3

It writes three runs, each as `run.json` (the run record) and `journal.json`
(its entries), in the stores' JSON form:

- `waiting/`: `ledger_flow` after its approval was answered, waiting for the
  answer to its last interrupt;
- `crashed/`: `crash_flow` in a process killed (SIGKILL, on a SQLite file) while
  its write tool ran and its reader's model waited to be retried;
- `fork/`: a fork of the crashed run at its custom step, as `Runtime.fork` wrote
  it before the forking process died (its copied write carries the parent's
  idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrion import Approve, Runtime
from orchestrion.engine.journal import Entry, RunRecord, StepStatus
from orchestrion.stores import MemoryStore
from orchestrion.testing import Faults, FaultyModel, FunctionModel, ScriptedModel, ServerError, call
from tests.compat.flows import Ledger, Models, crash_flow, ledger_flow


class Unused:
    """A model that is never asked in this run."""

    name = "test:unused"

    async def request(self, request: Any) -> Any:
        raise AssertionError("not asked")

    def stream(self, request: Any) -> Any:
        raise AssertionError("not asked")


def failing(name: str, *statuses: int) -> FaultyModel:
    inner = FunctionModel(lambda request: "never", name=name)
    return FaultyModel(inner, Faults.script([ServerError(s) for s in statuses]))


def write(directory: Path, record: RunRecord, entries: Sequence[Entry]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps(record.to_json(), indent=1) + "\n")
    journal = [e.to_json() for e in entries]
    (directory / "journal.json").write_text(json.dumps(journal, indent=1) + "\n")


async def waiting(out: Path) -> None:
    models = Models(
        triage=failing("triage-model", 400),
        backup_desk=ScriptedModel(["triaged: billing"], name="desk"),
        clerk=failing("clerk-model", 503, 503),
        clerk_backup=ScriptedModel(
            [call("lookup", {"account": "checking"}), call("pay", {"amount": 42.5}), "paid 42.50"],
            name="clerk-backup",
        ),
        writer=Unused(),
        reader=Unused(),
    )
    flow = ledger_flow(models)
    ledger = Ledger()
    async with Runtime(MemoryStore()) as runtime:
        first = await runtime.run(flow, "pay my bill", run_id="compat-v3-waiting", deps=ledger)
        [approval] = first.interrupts
        second = await runtime.resume(first.run_id, {approval.id: Approve()}, deps=ledger)
        assert [i.key for i in second.interrupts] == ["ledger-flow/more"], second
        record = await runtime.store.get_run(first.run_id)
        assert record is not None
        write(out / "waiting", record, await runtime.store.load(first.run_id))


def crash_models() -> Models:
    return Models(
        triage=Unused(),
        backup_desk=Unused(),
        clerk=Unused(),
        clerk_backup=Unused(),
        writer=ScriptedModel([call("transfer", {"amount": 5})], name="writer-model"),
        reader=failing("reader-model", 503),
    )


async def crashing_child(url: str) -> None:
    """Run `crash_flow` and SIGKILL this process once its three branches are where
    the corpus wants them."""
    async with Runtime(url, durability="sync", lease_ttl=1) as runtime:

        async def kill_when_ready() -> None:
            while True:
                await asyncio.sleep(0.01)
                entries = await runtime.store.load("compat-v3-crashed")
                states = {(e.key, e.status) for e in entries}
                if (
                    ("crash-flow/slow", StepStatus.COMPLETED) in states
                    and any(s is StepStatus.STARTED for _, s in states)
                    and ("crash-flow/reader/turn-1/model", StepStatus.FAILED) in states
                ):
                    os.kill(os.getpid(), signal.SIGKILL)

        killer = asyncio.create_task(kill_when_ready())
        ledger = Ledger(hang=True, pause=0.3)
        await runtime.run(
            crash_flow(crash_models()), "move 5", run_id="compat-v3-crashed", deps=ledger
        )
        killer.cancel()
        raise SystemExit("the run ended before it was killed")


class CrashOnCreate(MemoryStore):
    """A store whose process dies right after it created a run."""

    async def create_run(self, run: RunRecord, entries: Sequence[Entry] = (), **kw: Any) -> Any:
        await super().create_run(run, entries, **kw)
        raise KeyboardInterrupt("the forking process died")


async def crashed_and_fork(out: Path) -> None:
    db = out / "crash.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    child = subprocess.run(
        [sys.executable, "-m", "tests.compat.generate_v3", "--child", url], check=False
    )
    assert child.returncode == -signal.SIGKILL, child
    async with Runtime(url) as runtime:
        record = await runtime.store.get_run("compat-v3-crashed")
        assert record is not None
        entries = await runtime.store.load("compat-v3-crashed")
    db.unlink()
    for extra in out.glob("crash.db-*"):
        extra.unlink()
    write(out / "crashed", record, entries)

    store = CrashOnCreate()
    await MemoryStore.create_run(store, record, entries)
    runtime = Runtime(store)
    with contextlib.suppress(KeyboardInterrupt):
        await runtime.fork(
            "compat-v3-crashed",
            at="crash-flow/slow",
            new_run_id="compat-v3-fork",
            runnable=crash_flow(crash_models()),
        )
    fork = await store.get_run("compat-v3-fork")
    assert fork is not None
    write(out / "fork", fork, await store.load("compat-v3-fork"))


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        asyncio.run(crashing_child(sys.argv[2]))
    else:
        target = Path(sys.argv[1])
        asyncio.run(waiting(target))
        asyncio.run(crashed_and_fork(target))
