"""One owner per run: two runtimes on one store stand for two processes (the
multi-process proof with real processes is tests/test_ownership_processes.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrion import Agent, Approve, RunContext, RunStatus, Runtime, tool
from orchestrion.engine.journal import RunRecord, StepStatus
from orchestrion.engine.replay_log import idempotency_key_of
from orchestrion.engine.store import Store
from orchestrion.errors import AnswerError, LeaseLost, RunBusy, RunNotResumable, UserError
from orchestrion.messages import ModelRequest
from orchestrion.patterns import Concurrent
from orchestrion.testing import FunctionModel, ScriptedModel, call


class Payments:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def tool(self, *, approval: bool = False) -> Any:
        payments = self

        @tool(effect="write", approval=approval)
        async def pay(ctx: RunContext[None], amount: float) -> str:
            """Pay `amount`."""
            payments.keys.append(ctx.idempotency_key)
            return f"paid {amount}"

        return pay


def gated_model(gate: asyncio.Event, entered: asyncio.Event, script: list[Any]) -> FunctionModel:
    """Answers from `script` in order; before the second answer it waits for `gate`."""
    answers = iter(script)
    calls = 0

    async def answer(request: ModelRequest) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            entered.set()
            await gate.wait()
        return next(answers)

    return FunctionModel(answer)


def payer(*, approval: bool = False) -> tuple[Payments, Agent[str]]:
    """An agent paying 5 once, then saying "paid"."""
    payments = Payments()
    script = [call("pay", {"amount": 5}), "paid"]
    return payments, Agent(
        name="payer", model=ScriptedModel(script), tools=[payments.tool(approval=approval)]
    )


def gated_payer(
    *, approval: bool = False
) -> tuple[asyncio.Event, asyncio.Event, Payments, Agent[str]]:
    """An agent paying 1, then 2: its second model request waits for the gate."""
    gate, entered = asyncio.Event(), asyncio.Event()
    payments = Payments()
    script = [call("pay", {"amount": 1}), call("pay", {"amount": 2}), "done"]
    agent = Agent(
        name="payer",
        model=gated_model(gate, entered, script),
        tools=[payments.tool(approval=approval)],
    )
    return gate, entered, payments, agent


async def test_a_run_working_in_one_runtime_is_refused_to_another_before_anything_runs(
    store: Store,
) -> None:
    gate, entered, payments, agent = gated_payer()
    owner, other = Runtime(store), Runtime(store)
    work = asyncio.create_task(owner.run(agent, "pay twice", run_id="r1"))
    await entered.wait()
    with pytest.raises(RunBusy) as busy:
        await other.resume("r1", runnable=agent)
    assert busy.value.owner == owner.owner and busy.value.until > time.time()
    assert f"being worked on by {owner.owner}" in str(busy.value)
    gate.set()
    assert (await work).output == "done"
    assert len(payments.keys) == 2
    with pytest.raises(RunNotResumable, match="completed"):
        await other.resume("r1", runnable=agent)
    record = await other.get("r1")
    assert record.lease is None  # released with the final status


async def test_resume_can_wait_for_the_owner_to_let_go(store: Store) -> None:
    gate, entered, payments, agent = gated_payer(approval=True)
    owner, other = Runtime(store), Runtime(store)
    first = await owner.run(agent, "pay", run_id="r1")
    assert first.status is RunStatus.INTERRUPTED
    approval = first.interrupts[0].id
    work = asyncio.create_task(owner.resume("r1", {approval: Approve()}))
    await entered.wait()
    waiting = asyncio.create_task(other.resume("r1", wait=10, runnable=agent))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    gate.set()
    second = await work
    assert second.status is RunStatus.INTERRUPTED  # the second payment waits for approval
    resumed = await waiting  # claimed once the owner let go: nothing to answer, it waits again
    assert resumed.status is RunStatus.INTERRUPTED
    assert len(payments.keys) == 1


async def test_two_resumes_answering_one_approval_execute_the_write_once(store: Store) -> None:
    payments, agent = payer(approval=True)
    first = await Runtime(store).run(agent, "pay", run_id="r1")
    approval = first.interrupts[0].id
    a, b = Runtime(store), Runtime(store)
    outcomes = await asyncio.gather(
        a.resume("r1", {approval: Approve()}, runnable=agent),
        b.resume("r1", {approval: Approve()}, runnable=agent),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and won[0].status is RunStatus.COMPLETED
    assert len(refused) == 1 and isinstance(refused[0], RunBusy | RunNotResumable)
    assert len(payments.keys) == 1
    assert (await a.get("r1")).status is RunStatus.COMPLETED


async def test_a_crashed_owners_lease_blocks_until_it_ends(store: Store) -> None:
    payments, agent = payer()
    await store.create_run(
        _record("r1", agent.name), owner="dead-host:1:x", ttl=0.3
    )  # a process that claimed the run, then died
    runtime = Runtime(store)
    with pytest.raises(RunBusy, match="dead-host:1:x"):
        await runtime.resume("r1", runnable=agent)
    assert payments.keys == []
    assert (await runtime.get("r1")).orphaned_since(time.time()) is None
    await asyncio.sleep(0.35)
    assert (await runtime.get("r1")).orphaned_since(time.time()) is not None
    result = await runtime.resume("r1", runnable=agent)
    assert result.output == "paid" and len(payments.keys) == 1


async def test_cancel_from_another_runtime_stops_the_owner_before_its_next_write(
    store: Store,
) -> None:
    gate, entered, payments, agent = gated_payer()
    owner, other = Runtime(store), Runtime(store)
    work = asyncio.create_task(owner.run(agent, "pay twice", run_id="r1"))
    await entered.wait()  # the first payment went out; the model is being asked again
    cancelled = await other.cancel("r1")
    assert cancelled.status is RunStatus.CANCELLED and cancelled.lease is None
    gate.set()  # the model answers "pay 2": the owner must not pay
    result = await work
    assert result.status is RunStatus.CANCELLED
    assert len(payments.keys) == 1
    assert (await other.get("r1")).status is RunStatus.CANCELLED
    steps = await other.history("r1")
    assert [s.key for s in steps if s.kind == "tool"] == ["payer/turn-1/tool/pay#call_1_0"]


async def test_cancel_of_a_resume_still_waiting_for_the_lease_cancels_the_run(
    store: Store,
) -> None:
    """The run is active in this runtime only as a resume waiting for its owner
    elsewhere: stopping that wait is not cancelling the run."""
    gate, entered, payments, agent = gated_payer()
    owner, mine = Runtime(store), Runtime(store)
    work = asyncio.create_task(owner.run(agent, "pay twice", run_id="r1"))
    await entered.wait()  # the first payment went out; the model is being asked again
    waiting = asyncio.create_task(mine.resume("r1", wait=60, runnable=agent))
    await asyncio.sleep(0.1)  # refused, waiting for the owner to let go
    assert not waiting.done()
    cancelled = await mine.cancel("r1")
    assert cancelled.status is RunStatus.CANCELLED
    assert waiting.cancelled()
    gate.set()  # the model answers "pay 2": the owner must not pay
    assert (await work).status is RunStatus.CANCELLED
    assert len(payments.keys) == 1
    assert (await mine.get("r1")).status is RunStatus.CANCELLED


async def test_two_cancels_at_once_both_return_the_cancelled_run(store: Store) -> None:
    gate, entered, payments, agent = gated_payer()
    owner = Runtime(store)
    work = asyncio.create_task(owner.run(agent, "pay twice", run_id="r1"))
    await entered.wait()
    records = await asyncio.gather(Runtime(store).cancel("r1"), Runtime(store).cancel("r1"))
    assert [r.status for r in records] == [RunStatus.CANCELLED] * 2
    gate.set()
    assert (await work).status is RunStatus.CANCELLED
    assert len(payments.keys) == 1


async def test_cancel_of_a_completed_run_leaves_it_completed(store: Store) -> None:
    runtime = Runtime(store)
    done = await runtime.run(Agent(name="a", model=ScriptedModel(["ok"])), "go")
    assert (await Runtime(store).cancel(done.run_id)).status is RunStatus.COMPLETED


class FailingRenewal:
    """A store whose first renewal raises what a driver may raise (not a StoreError)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def renew(self, leases: Any, *, ttl: float) -> set[str]:
        if not self.failed:
            self.failed += 1
            raise ConnectionResetError("the database server went away")
        return await self._store.renew(leases, ttl=ttl)


@pytest.mark.parametrize("renewals", ["working", "failing once"])
async def test_a_run_longer_than_its_lease_keeps_it_by_heartbeat(
    store: Store, renewals: str
) -> None:
    """Also when a renewal raises what a driver may raise: the next beat renews."""

    async def slow(request: ModelRequest) -> str:
        await asyncio.sleep(0.8)
        return "finally"

    flaky = FailingRenewal(store)
    owned: Any = flaky if renewals == "failing once" else store
    # Renewed every 0.1 s: a failed renewal and a late one (a loaded machine) still
    # leave the lease 0.1 s to spare.
    owner, other = Runtime(owned, lease_ttl=0.3), Runtime(store)
    work = asyncio.create_task(
        owner.run(Agent(name="a", model=FunctionModel(slow)), "go", run_id="r1")
    )
    for _ in range(4):
        await asyncio.sleep(0.15)
        with pytest.raises(RunBusy):
            await other.resume("r1", runnable=Agent(name="a", model=ScriptedModel(["x"])))
    assert (await work).output == "finally"
    assert flaky.failed == (1 if renewals == "failing once" else 0)


def _heartbeats() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "orchestrion-leases"]


async def test_runs_one_after_another_share_one_heartbeat_that_ends_once_none_is_held(
    store: Store,
) -> None:
    runtime = Runtime(store, lease_ttl=0.15)
    agent = Agent(name="a", model=ScriptedModel(["one", "two"]))
    await runtime.run(agent, "go")
    [beat] = _heartbeats()
    await runtime.run(agent, "go")
    assert _heartbeats() == [beat]  # not a task made and cancelled per run
    await asyncio.sleep(0.15)  # its next beat finds no run held
    assert beat.done() and _heartbeats() == []


async def test_an_owner_that_lost_its_lease_stops_at_its_next_step(store: Store) -> None:
    gate, entered, payments, agent = gated_payer()
    owner = Runtime(store, lease_ttl=0.15)
    work = asyncio.create_task(owner.run(agent, "pay twice", run_id="r1"))
    await entered.wait()
    # Another process takes the run over (as if this one had stalled past its lease).
    await store.claim("r1", "elsewhere", ttl=30, steal=True)
    await asyncio.sleep(0.2)  # the owner's heartbeat finds the lease lost
    gate.set()
    with pytest.raises(LeaseLost, match="no longer owned by this process"):
        await work
    assert len(payments.keys) == 1
    record = await Runtime(store).get("r1")
    assert record.status is RunStatus.RUNNING and record.lease is not None
    assert record.lease.owner == "elsewhere"


async def test_an_answer_journaled_before_a_crash_is_not_applied_twice(store: Store) -> None:
    payments = Payments()

    def agent(model: Any) -> Agent[str]:
        return Agent(name="payer", model=model, tools=[payments.tool(approval=True)])

    first = await Runtime(store).run(
        agent(ScriptedModel([call("pay", {"amount": 5})])), "pay", run_id="r1"
    )
    approval = first.interrupts[0].id

    hanging = asyncio.Event()

    async def hang(request: ModelRequest) -> str:
        hanging.set()  # after the approval and the payment were journaled
        await asyncio.sleep(3600)
        return "never"

    crashing = asyncio.create_task(
        Runtime(store).resume("r1", {approval: Approve()}, runnable=agent(FunctionModel(hang)))
    )
    await hanging.wait()
    crashing.cancel()  # a crash: the run stays running, its approval still listed
    await asyncio.gather(crashing, return_exceptions=True)
    assert len(payments.keys) == 1
    assert [p["id"] for p in (await store.get_run("r1")).pending] == [approval]  # type: ignore[union-attr]
    with pytest.raises(AnswerError, match="already answered"):
        await Runtime(store).resume(
            "r1",
            {approval: {"approved": False, "reason": "no"}},
            runnable=agent(ScriptedModel(["x"])),
        )
    again = await Runtime(store).resume(
        "r1", {approval: Approve()}, runnable=agent(ScriptedModel(["paid"]))
    )
    assert again.status is RunStatus.COMPLETED and again.output == "paid"
    assert len(payments.keys) == 1


async def test_a_fork_keeps_the_idempotency_key_of_a_write_started_in_the_parent(
    store: Store,
) -> None:
    payments = Payments()
    cut = asyncio.Event()

    @tool(effect="write")
    async def slow_pay(ctx: RunContext[None], amount: float) -> str:
        """Pay slowly."""
        payments.keys.append(ctx.idempotency_key)
        if not cut.is_set():
            cut.set()
            await asyncio.sleep(10)  # cut off by its branch's timeout, effect unknown
        return "paid"

    def pay_once(request: ModelRequest) -> Any:
        paid = any(type(m).__name__ == "ToolResult" for m in request.messages)
        return "ok" if paid else call("slow_pay", {"amount": 9})

    def team(model_b: Any) -> Concurrent:
        return Concurrent(
            name="fan",
            branches=[
                Agent(name="payer", model=FunctionModel(pay_once), tools=[slow_pay]),
                Agent(name="writer", model=model_b),
            ],
            timeout=0.2,
        )

    runtime = Runtime(store)
    parent = await runtime.run(team(ScriptedModel(["draft"])), "go", run_id="parent")
    assert parent.status is RunStatus.FAILED  # WriteUncertain: the payment may have happened
    started_key = "fan/branch-0/payer/turn-1/tool/slow_pay#call_1_0"
    history = {s.key: s for s in await runtime.history("parent")}
    assert history[started_key].status is StepStatus.STARTED
    # Fork at a step after the write started: the copied prefix holds the write in flight.
    later = max(history.values(), key=lambda s: s.seq)
    fork = await runtime.fork("parent", at=later.key, runnable=team(ScriptedModel(["draft 2"])))
    assert fork.status is RunStatus.COMPLETED
    parent_key = idempotency_key_of("parent", started_key)
    assert payments.keys == [parent_key, parent_key]  # the bank sees the same call again


class StalledRenewals:
    """A store whose next renewal, once `stall` is set, waits for `go` (a heartbeat
    write that takes its time); `renewed` is set once it returned."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.stall = False
        self.stalled, self.go, self.renewed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def renew(self, leases: Any, *, ttl: float) -> set[str]:
        stalled = self.stall
        if stalled:
            self.stall = False
            self.stalled.set()
            await self.go.wait()
        lost = await self._store.renew(leases, ttl=ttl)
        if stalled:
            self.renewed.set()
        return lost


async def test_a_renewal_in_flight_when_a_run_is_resumed_does_not_halt_the_resume(
    store: Store,
) -> None:
    """The heartbeat renews the old lease of a run that meanwhile stopped and was
    resumed here under a new one: the old lease comes back lost, the new one is kept."""
    slow = StalledRenewals(store)
    runtime = Runtime(slow, lease_ttl=0.3)  # type: ignore[arg-type]
    y_gate, y_entered = asyncio.Event(), asyncio.Event()

    async def long(request: ModelRequest) -> str:
        y_entered.set()
        await y_gate.wait()
        return "y done"

    other = asyncio.create_task(  # keeps the heartbeat going
        runtime.run(Agent(name="y", model=FunctionModel(long)), "go", run_id="y")
    )
    await y_entered.wait()
    gates = [asyncio.Event(), asyncio.Event()]
    entered = [asyncio.Event(), asyncio.Event()]
    script = iter([call("pay", {"amount": 1}), "done"])
    payments = Payments()

    async def answer(request: ModelRequest) -> Any:
        turn = sum(type(m).__name__ == "ToolResult" for m in request.messages)
        entered[turn].set()
        await gates[turn].wait()
        return next(script)

    agent = Agent(name="payer", model=FunctionModel(answer), tools=[payments.tool(approval=True)])
    first = asyncio.create_task(runtime.run(agent, "pay", run_id="x"))
    await entered[0].wait()
    slow.stall = True
    await slow.stalled.wait()  # renewing {y: 1, x: 1}
    gates[0].set()
    interrupted = await first
    assert interrupted.status is RunStatus.INTERRUPTED
    second = asyncio.create_task(runtime.resume("x", {interrupted.interrupts[0].id: Approve()}))
    await entered[1].wait()  # x works under token 2; the payment was made
    slow.go.set()
    await slow.renewed.wait()  # x's token 1 came back lost
    gates[1].set()
    result = await second
    assert result.status is RunStatus.COMPLETED and result.output == "done"
    assert len(payments.keys) == 1
    y_gate.set()
    assert (await other).output == "y done"


def test_a_lease_ttl_that_is_not_positive_is_refused() -> None:
    for bad in (0, -1, float("nan"), float("inf"), 1e12, True, "30"):
        with pytest.raises(UserError, match="lease_ttl"):
            Runtime("memory://", lease_ttl=bad)  # type: ignore[arg-type]


def _record(run_id: str, name: str) -> Any:
    from orchestrion.engine.journal import RunRecord

    now = time.time()
    return RunRecord(
        id=run_id, name=name, status=RunStatus.RUNNING, input="pay", created_at=now, updated_at=now
    )


async def test_a_cancel_between_a_resumes_claim_and_its_start_gives_the_cancelled_run(
    store: Store,
) -> None:
    payments, agent = payer(approval=True)
    first = await Runtime(store).run(agent, "pay", run_id="r1")
    real_update = store.update_run
    cancelled = False

    async def cancel_first(run_id: str, **kwargs: Any) -> None:
        nonlocal cancelled
        if kwargs.get("status") is RunStatus.RUNNING and not cancelled:
            cancelled = True  # another process cancels right after this resume claimed
            await Runtime(store).cancel(run_id)
        await real_update(run_id, **kwargs)

    store.update_run = cancel_first  # type: ignore[method-assign]
    approval = first.interrupts[0].id
    result = await Runtime(store).resume("r1", {approval: Approve()}, runnable=agent)
    assert cancelled and result.status is RunStatus.CANCELLED
    assert payments.keys == []


async def test_a_write_run_again_after_a_crash_is_not_run_once_the_run_was_cancelled(
    store: Store,
) -> None:
    """A write that started before a crash runs again on resume with no journal
    entry of its own: the store is asked first whether this process still owns
    the run, so a cancel that came meanwhile stops it."""
    started = asyncio.Event()
    keys: list[str] = []

    @tool(effect="write")
    async def pay(ctx: RunContext[None], amount: float) -> str:
        """Pay `amount`."""
        keys.append(ctx.idempotency_key)
        started.set()
        await asyncio.sleep(3600)  # the process dies here, mid-payment
        return "paid"

    agent = Agent(name="payer", model=ScriptedModel([call("pay", {"amount": 5})]), tools=[pay])
    crashed = asyncio.create_task(Runtime(store).run(agent, "pay", run_id="r1"))
    await started.wait()
    crashed.cancel()  # a crash: the write is journaled started, not completed
    await asyncio.gather(crashed, return_exceptions=True)

    real_claim = store.claim

    async def cancelled_right_after(run_id: str, owner: str, **kwargs: Any) -> RunRecord:
        record = await real_claim(run_id, owner, **kwargs)
        if not kwargs.get("steal"):  # the resume's claim (the cancel's own steals the run)
            await Runtime(store).cancel(run_id)
        return record

    store.claim = cancelled_right_after  # type: ignore[method-assign]
    again = Agent(name="payer", model=ScriptedModel(["never asked"]), tools=[pay])
    result = await Runtime(store).resume("r1", runnable=again)
    assert result.status is RunStatus.CANCELLED
    assert len(keys) == 1  # the payment was not made again


async def test_two_resumes_of_one_run_cannot_both_execute_it(runtime: Runtime) -> None:
    executions: list[str] = []
    crash = {"on": True}

    @tool(effect="write")
    async def pay(ctx: RunContext[None]) -> str:
        executions.append(ctx.idempotency_key)
        if crash["on"]:
            crash["on"] = False
            raise asyncio.CancelledError  # the process dies inside the write
        await asyncio.sleep(0.01)
        return "paid"

    agent = Agent(name="a", model=ScriptedModel([call("pay"), "done"]), tools=[pay])
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(agent, "go", run_id="r1")

    outcomes = await asyncio.gather(
        runtime.resume("r1"), runtime.resume("r1"), return_exceptions=True
    )

    assert sum(isinstance(o, RunNotResumable) for o in outcomes) == 1
    assert [o.status for o in outcomes if not isinstance(o, BaseException)] == [RunStatus.COMPLETED]
    assert len(executions) == 2 and len(set(executions)) == 1, "re-run once, same key"
