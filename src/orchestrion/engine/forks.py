"""Forks: a new run from a prefix of another run's journal, optionally with one
step's result edited."""

from __future__ import annotations

import time
from secrets import token_hex
from typing import Any

from orchestrion._json import JSON, to_jsonable
from orchestrion.engine.interrupts import answer_to_json, interrupt_id, normalize_approval
from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.queue import submit_steps
from orchestrion.engine.records import ModelResponded, ToolReturned, WriteStarted, encode, expect
from orchestrion.engine.replay_log import idempotency_key_of
from orchestrion.errors import UserError
from orchestrion.messages import ModelResponse

NO_EDIT: Any = object()
"""`fork(edit=...)` when no edit is given (None is an edit)."""


def fork_prefix(
    run_id: str, entries: list[Entry], at: str, edit: Any = NO_EDIT
) -> tuple[list[Entry], dict[str, JSON]]:
    """The journal a fork of `run_id` at step `at` starts with, and the answers it
    is resumed with (an edited approval or answer is validated where the run asks
    for it, like any answer, before it is journaled)."""
    index = next((i for i, e in enumerate(entries) if e.key == at), None)
    if index is None:
        known = list(dict.fromkeys(e.key for e in entries))
        raise UserError(
            f"Run {run_id} has no step {at!r}. Its steps: {known[:20]}"
            f"{' ...' if len(known) > 20 else ''} (see `orchestrion show {run_id}`)."
        )
    submits = [e.key for e in submit_steps(entries[:index])]
    if submits:
        raise UserError(
            f"Run {run_id} queued separate runs before step {at!r} (ctx.submit, at "
            f"{submits[0]!r}: a PeerNetwork with mailboxes, say); a fork would share them with "
            f"this run. Fork at a step before {submits[0]!r}, or resume the run instead."
        )
    prefix = [_copied(run_id, e, i) for i, e in enumerate(entries[:index])]
    kind = entries[index].kind
    answers: dict[str, JSON] = {}
    if edit is not NO_EDIT and kind in ("approval", "interrupt"):
        iid = interrupt_id(at)
        answers[iid] = normalize_approval(iid, edit) if kind == "approval" else answer_to_json(edit)
    elif edit is not NO_EDIT:
        now = time.time()
        prefix.append(
            Entry(index, at, kind, StepStatus.COMPLETED, _edited(kind, at, edit), now, now)
        )
    return prefix, answers


def _copied(run_id: str, entry: Entry, seq: int) -> Entry:
    """An entry of run `run_id` as a fork's prefix holds it, at `seq`. A write that
    started in the parent and may have happened keeps the parent's idempotency
    key, so the fork's retry of it is recognised downstream as the same call."""
    if entry.status is StepStatus.STARTED:
        origin = expect(entry, WriteStarted).origin_key or idempotency_key_of(run_id, entry.key)
        return entry._replace(seq=seq, result=encode(WriteStarted(origin_key=origin)))
    return entry._replace(seq=seq)


def _edited(kind: str, key: str, edit: Any) -> JSON:
    """The journaled form of an edited step result, checked for its kind."""
    if kind == "model":
        return encode(ModelResponded(response=_edited_response(key, edit)))
    if kind == "tool":
        if isinstance(edit, str):
            return encode(ToolReturned(content=edit))
        if isinstance(edit, dict) and isinstance(edit.get("content"), str):
            is_error = bool(edit.get("is_error", False))
            return encode(ToolReturned(content=edit["content"], is_error=is_error))
        raise UserError(
            f"Edit for tool step {key!r} must be the text the model reads, or "
            '{"content": str, "is_error": bool}.'
        )
    return to_jsonable(edit)


def _edited_response(key: str, edit: Any) -> ModelResponse:
    if isinstance(edit, ModelResponse):
        return edit
    if isinstance(edit, str):
        return ModelResponse(text=edit)
    try:
        return ModelResponse.from_json(edit)
    except (TypeError, KeyError, AttributeError) as exc:
        raise UserError(
            f"Edit for model step {key!r} must be a ModelResponse, a str or its JSON form: {exc}"
        ) from None


def fork_record(record: RunRecord, at: str, new_run_id: str | None) -> RunRecord:
    """The record of a new fork of the run of `record` at step `at`."""
    now = time.time()
    return RunRecord(
        id=new_run_id or token_hex(8),
        name=record.name,
        status=RunStatus.RUNNING,
        input=record.input,
        target=record.target,
        created_at=now,
        updated_at=now,
        parent_id=record.id,
        fork_at=at,
    )
