"""Records written by earlier schema versions stay readable and replayable.

`v1/` holds a loan-payoff run waiting for its payment approval, as version 1
wrote it. Never regenerate these files: add a directory per new version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrion import Approve, RunStatus, Runtime
from orchestrion.demos.loan_payoff import Bank, agent
from orchestrion.engine.journal import Entry, RunRecord
from orchestrion.stores import MemoryStore

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
