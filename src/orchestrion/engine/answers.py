"""Answers given to a run's interrupts, checked before the run is resumed."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrion._json import JSON, short_json
from orchestrion.engine.interrupts import (
    Answer,
    Interrupt,
    answer_to_json,
    interrupt_id,
    normalize_approval,
)
from orchestrion.engine.journal import Entry, RunRecord, StepStatus
from orchestrion.engine.records import Answered, expect
from orchestrion.errors import AnswerError


def check_answers(record: RunRecord, answers: Mapping[str, Answer]) -> dict[str, JSON]:
    """Check answers against the run's pending interrupts before anything runs."""
    pending = {i.id: i for i in map(Interrupt.from_json, record.pending)}
    by_key = {i.key: i for i in pending.values()}
    checked: dict[str, JSON] = {}
    for given, answer in answers.items():
        interrupt = pending.get(given) or by_key.get(given)
        if interrupt is None:
            ids = sorted(pending) or "none"
            raise AnswerError(
                f"Run {record.id} has no pending interrupt {given!r}. Pending: {ids} "
                f"(see `orchestrion show {record.id}`)."
            )
        if interrupt.kind == "approval":
            checked[interrupt.id] = normalize_approval(interrupt.id, answer)
        else:
            checked[interrupt.id] = answer_to_json(answer)
    return checked


def not_yet_answered(
    run_id: str, entries: list[Entry], answers: dict[str, JSON]
) -> dict[str, JSON]:
    """`answers` without those the journal already holds (a resume that answered
    them crashed afterwards): the same answer again is dropped, another refused."""
    if not answers:
        return answers
    journaled = {
        interrupt_id(e.key): expect(e, Answered).answer
        for e in entries
        if e.kind in ("approval", "interrupt") and e.status is StepStatus.COMPLETED
    }
    fresh: dict[str, JSON] = {}
    for iid, answer in answers.items():
        if iid not in journaled:
            fresh[iid] = answer
        elif journaled[iid] != answer:
            raise AnswerError(
                f"Interrupt {iid} of run {run_id} was already answered with "
                f"{short_json(journaled[iid])}; it cannot be answered again with "
                f"{short_json(answer)}. Resume without answering it, or fork the run at "
                "that step to answer differently."
            )
    return fresh
