"""The parts an `Execution` is composed of, through their own interfaces: the
`ReplayLog`, the `Accounts` and the `Events`."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from orchestrion import Agent, Budget, RunStatus, Runtime, tool
from orchestrion.engine.accounts import Accounts
from orchestrion.engine.events import NO_EVENTS, Emitter, Event, StepFailed, events_for
from orchestrion.engine.journal import Entry, RunRecord
from orchestrion.engine.records import ModelResponded, WriteStarted, encode
from orchestrion.engine.replay_log import ReplayLog, idempotency_key_of
from orchestrion.errors import BudgetExceeded, DeterminismError, LeaseLost
from orchestrion.messages import ModelResponse, Usage
from orchestrion.stores import MemoryStore
from orchestrion.testing import ScriptedModel, call


def entry(seq: int, key: str, kind: str, record: Any) -> Entry:
    return Entry(seq, key, kind, record.status, encode(record), 0.0, 0.0)


def answered(usage: Usage) -> ModelResponded:
    return ModelResponded(response=ModelResponse(text="ok", usage=usage))


def log_of(entries: list[Entry]) -> ReplayLog:
    return ReplayLog("r1", entries, store=MemoryStore(), sync=False)


# -- ReplayLog -------------------------------------------------------------


def test_the_log_replays_completed_steps_and_refuses_a_key_claimed_twice() -> None:
    log = log_of([entry(0, "a/turn-1/model", "model", answered(Usage()))])

    done = log.claim("a/turn-1/model", "first site")
    assert done is not None and done.seq == 0
    assert log.claim("a/turn-2/model", "new step") is None
    assert log.steps == 2
    with pytest.raises(DeterminismError, match="first site"):
        log.claim("a/turn-1/model", "second site")


def test_a_halted_log_refuses_the_next_claim_and_append() -> None:
    log = log_of([])
    lost = LeaseLost("taken", run_id="r1")
    log.halt(lost)

    with pytest.raises(LeaseLost):
        log.claim("a/turn-1/model", "site")
    with pytest.raises(LeaseLost):
        log.record("a/turn-1/tool/pay#c1", "tool", WriteStarted(), 0.0)


async def test_the_log_appends_after_the_journal_and_knows_the_writes_started() -> None:
    journaled = [entry(0, "a/turn-1/tool/pay#c1", "tool", WriteStarted())]
    store = MemoryStore()
    await store.create_run(RunRecord(id="r1", name="a", status=RunStatus.RUNNING), journaled)
    log = ReplayLog("r1", journaled, store=store, sync=False)

    await log.record("b/turn-1/tool/pay#c2", "tool", WriteStarted(), 0.0)
    assert [(e.seq, e.key) for e in await store.load("r1")] == [
        (0, "a/turn-1/tool/pay#c1"),
        (1, "b/turn-1/tool/pay#c2"),
    ]
    assert log.writes_below("a") == ["a/turn-1/tool/pay#c1"]
    assert log.writes_below("b") == ["b/turn-1/tool/pay#c2"]
    assert log.cut_off_below("a") == []
    log.cut_off("a/turn-1/tool/pay#c1")
    assert log.cut_off_below("a") == ["a/turn-1/tool/pay#c1"]


def test_a_fork_keeps_the_idempotency_key_of_a_write_started_in_its_origin() -> None:
    origin = idempotency_key_of("parent", "a/turn-1/tool/pay#c1")
    log = log_of([entry(0, "a/turn-1/tool/pay#c1", "tool", WriteStarted(origin_key=origin))])

    assert log.idempotency_key("a/turn-1/tool/pay#c1") == origin
    assert log.idempotency_key("a/turn-2/tool/pay#c2") == idempotency_key_of(
        "r1", "a/turn-2/tool/pay#c2"
    )


# -- Accounts ---------------------------------------------------------------


def test_accounts_count_what_replayed_steps_below_a_key_spent() -> None:
    log = log_of(
        [
            entry(0, "a/w/turn-1/model", "model", answered(Usage(10, 1, 1))),
            entry(1, "a/w/fallback/v/turn-1/model", "model", answered(Usage(5, 1, 1))),
            entry(2, "b/turn-1/model", "model", answered(Usage(100, 1, 1))),
        ]
    )
    accounts = Accounts(log)

    accounts.spent_below("a/w", besides="a/w/fallback")
    assert accounts.usage == Usage(10, 1, 1)
    accounts.spent(Usage(1, 1, 1))
    assert accounts.usage == Usage(11, 2, 2)


def test_accounts_stop_a_run_past_its_steps_claimed_in_the_log() -> None:
    log = log_of([])
    accounts = Accounts(log, budget=Budget(steps=1))
    log.claim("a/turn-1/model", "site")

    with pytest.raises(BudgetExceeded, match="Run r1") as caught:
        accounts.check_budget("m")
    assert caught.value.steps_done == 1


# -- Events -----------------------------------------------------------------


@tool
async def lookup(i: int) -> str:
    """Look up i."""
    return f"found {i}"


async def test_a_run_no_sink_listens_to_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: object, *args: object) -> None:
        raise AssertionError(f"{type(self).__name__} built with no sink listening")

    for event_type in get_args(Event):
        monkeypatch.setattr(event_type, "__init__", refuse)
    model = ScriptedModel([call("lookup", {"i": 1}), call("lookup", {"i": 2}), "done"])
    agent = Agent(name="a", model=model, tools=[lookup])

    async with Runtime("memory://") as rt:
        result = await rt.run(agent, "go")

    assert result.status is RunStatus.COMPLETED
    assert events_for("r1", None) is NO_EVENTS


def test_the_emitter_builds_each_event_for_its_sink() -> None:
    seen: list[Event] = []
    events = events_for("r1", seen.append)
    assert isinstance(events, Emitter) and events.listening

    events.step_failed("a/turn-1/model", "model", ValueError("bad"))
    assert seen == [StepFailed("r1", "a/turn-1/model", "model", "ValueError: bad")]
