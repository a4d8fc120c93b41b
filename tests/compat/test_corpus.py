"""Records written by earlier schema versions stay readable and replayable.

`v1/` holds a loan-payoff run waiting for its payment approval, as version 1
wrote it. `v3/` holds three runs version 3 wrote (see `generate_v3.py`): one
waiting for an answer after nearly every kind of step, one killed mid-way, and a
fork of that one. Never regenerate these files: add a directory per new version
(docs/compatibility.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from random import Random

import pytest

from orchestrion import Approve, RunStatus, Runtime
from orchestrion.demos.loan_payoff import Bank, agent
from orchestrion.engine.journal import Entry, RunRecord, StepStatus
from orchestrion.engine.replay_log import idempotency_key_of
from orchestrion.engine.store import Store
from orchestrion.stores import MemoryStore
from orchestrion.testing import FunctionModel, ScriptedModel
from tests.compat.flows import Ledger, Models, crash_flow, ledger_flow

CORPUS = Path(__file__).parent


async def test_v1_run_waiting_for_approval_resumes_to_completion() -> None:
    record = RunRecord.from_json(json.loads((CORPUS / "v1/run.json").read_text()))
    entries = [Entry.from_json(e) for e in json.loads((CORPUS / "v1/journal.json").read_text())]
    assert record.v == 1 and all(e.v == 1 for e in entries)
    assert record.status is RunStatus.INTERRUPTED

    store = MemoryStore()
    await store.create_run(record, entries)
    bank = Bank()
    runtime = Runtime(store)
    [pending] = record.pending
    result = await runtime.resume(record.id, {pending["id"]: Approve()}, runnable=agent, deps=bank)

    assert result.status is RunStatus.COMPLETED
    assert "paid 4,812.50" in str(result.output)
    assert len(bank.payments) == 1
    steps = await runtime.history(record.id)
    replayed = [s.key for s in steps if s.seq < len(entries)]
    assert replayed[:2] == [
        "loan-payoff/turn-1/model",
        "loan-payoff/turn-1/tool/get_loan#call_loan",
    ]


def test_newer_versions_are_refused_with_a_clear_message() -> None:
    data = json.loads((CORPUS / "v1/journal.json").read_text())[0]
    data["v"] = 99
    with pytest.raises(ValueError, match="upgrade orchestrion"):
        Entry.from_json(data)


def v3(name: str) -> tuple[RunRecord, list[Entry]]:
    record = RunRecord.from_json(json.loads((CORPUS / "v3" / name / "run.json").read_text()))
    journal = json.loads((CORPUS / "v3" / name / "journal.json").read_text())
    entries = [Entry.from_json(e) for e in journal]
    assert record.v == 3 and all(e.v == 3 for e in entries)
    return record, entries


def refusing(name: str) -> FunctionModel:
    """A model the resumed run must not ask: everything it answered is journaled."""

    def refuse(request: object) -> str:
        raise AssertionError(f"model {name} was asked again")

    return FunctionModel(refuse, name=name)


def models(**given: object) -> Models:
    roles = ("triage", "backup_desk", "clerk", "clerk_backup", "writer", "reader")
    return Models(**{role: given.get(role) or refusing(role) for role in roles})


async def test_v3_waiting_run_resumes_to_completion_without_redoing_a_step(store: Store) -> None:
    record, entries = v3("waiting")
    assert record.status is RunStatus.INTERRUPTED
    await store.create_run(record, entries)
    ledger = Ledger()
    runtime = Runtime(store)
    [pending] = record.pending
    result = await runtime.resume(
        record.id, {pending["id"]: "no, thanks"}, runnable=ledger_flow(models()), deps=ledger
    )

    assert result.status is RunStatus.COMPLETED
    seed, receipt = entries[1].result, entries[2].result
    assert result.output == (
        "triaged: billing | paid 42.50 | customer prefers email | no, thanks | "
        f"{receipt} {Random(seed).randrange(1000)} 2026"
    )
    assert ledger.payments == [] and ledger.lookups == 0  # no tool ran again
    steps = {s.key: s for s in await runtime.history(record.id)}
    clerk_turn_1 = steps["ledger-flow/clerk/turn-1/model"]
    assert clerk_turn_1.result["fallback"] == "test:clerk-backup"
    assert [a["attempt"] for a in clerk_turn_1.attempts] == [1, 2]
    assert steps["ledger-flow/triage/gave-up"].result["fallback"] == "backup-desk"
    assert steps["ledger-flow/more"].result == "no, thanks"
    assert steps["ledger-flow/audit"].status is StepStatus.FAILED  # it ran again, and failed again
    assert result.usage.requests == 4  # the four journaled model responses


WRITE = "crash-flow/writer/turn-1/tool/transfer#call_1_0"
"""The write the crashed run had started: its resume (or its fork's) makes it again."""


async def resume_crash_flow(store: Store, run_id: str) -> tuple[Runtime, Ledger, FunctionModel]:
    """Resume a v3 crash-flow run to completion, checked; its runtime, ledger and reader."""
    ledger = Ledger()
    runtime = Runtime(store)
    reader = FunctionModel(lambda request: "read ok", name="reader-model")
    flow = crash_flow(models(writer=ScriptedModel(["moved"], name="writer-model"), reader=reader))
    result = await runtime.resume(run_id, runnable=flow, deps=ledger)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "slow done | moved | read ok"
    return runtime, ledger, reader


async def test_v3_crashed_run_resumes_its_write_with_the_same_key(store: Store) -> None:
    record, entries = v3("crashed")
    assert record.status is RunStatus.RUNNING and record.lease is not None
    await store.create_run(record, entries)
    runtime, ledger, reader = await resume_crash_flow(store, record.id)
    assert ledger.keys == [idempotency_key_of(record.id, WRITE)]
    assert ledger.payments == [5.0]
    assert len(reader.requests) == 1  # its retry, after the journaled failed attempt
    steps = {s.key: s for s in await runtime.history(record.id)}
    assert [a["attempt"] for a in steps["crash-flow/reader/turn-1/model"].attempts] == [1]


async def test_v3_fork_retries_its_parents_write_under_the_parents_key(store: Store) -> None:
    parent, parent_entries = v3("crashed")
    record, entries = v3("fork")
    assert record.parent_id == parent.id and record.fork_at == "crash-flow/slow"
    await store.create_run(parent, parent_entries)
    await store.create_run(record, entries)
    _, ledger, _ = await resume_crash_flow(store, record.id)
    assert ledger.keys == [idempotency_key_of(parent.id, WRITE)]  # the parent's, not the fork's
