"""`Worker` in one process, on every store: runs that cannot start fail once rather
than spin, a drain stops only the worker's runs (at step boundaries, never inside
a write tool's call), and answers kept for a queued run are honoured everywhere."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    RunContext,
    RunNotResumable,
    RunStatus,
    Runtime,
    UserError,
    Worker,
    tool,
    workflow,
)
from orchestrion.engine.journal import RunRecord
from orchestrion.engine.queue import queue_of
from orchestrion.engine.store import Store
from orchestrion.testing import ScriptedModel


def target_file(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return f"{path}:agent"


GOOD = """
    from orchestrion import Agent
    from orchestrion.testing import ScriptedModel

    agent = Agent(name="echo", model=ScriptedModel(["done"] * 100))
"""


@pytest.mark.parametrize(
    "body", ["raise RuntimeError('PAYMENTS_API_KEY is not set')", "import sys; sys.exit(3)"]
)
async def test_a_run_whose_code_does_not_import_fails_once_and_the_queue_goes_on(
    store: Store, tmp_path: Path, body: str
) -> None:
    runtime = Runtime(store)
    first = await runtime.submit(target_file(tmp_path, "good", GOOD), "a")
    (tmp_path / "bad.py").write_text(body + "\n")
    # Submitted where its code imported, worked on where it does not: the oldest run.
    failing = RunRecord(
        id="failing",
        name="echo",
        status=RunStatus.QUEUED,
        target=f"{tmp_path / 'bad.py'}:agent",
        queue="default",
        created_at=0.0,
    )
    await store.create_run(failing)
    last = await runtime.submit(target_file(tmp_path, "good", GOOD), "c")
    await Worker(runtime, poll=0.05).run(until_idle=True)

    gone = await store.get_run("failing")
    assert gone is not None and gone.status is RunStatus.FAILED
    assert gone.token == 1  # claimed once: failed with the reason, not taken again and again
    assert gone.error is not None and gone.error["type"] == "TargetError"
    for run_id in (first, last):
        done = await store.get_run(run_id)
        assert done is not None and done.status is RunStatus.COMPLETED


@tool(effect="write")
async def transfer(ctx: RunContext[Any], amount: int) -> str:
    """Move money: two legs, with the time of each (steps inside the call)."""
    ledger: list[str] = ctx.deps
    ledger.append(f"debit {amount}")
    await ctx.now()
    await asyncio.sleep(0.2)
    await ctx.now()
    ledger.append(f"credit {amount}")
    return "moved"


async def test_a_drain_lets_a_write_tool_finish_and_stops_only_the_workers_runs(
    store: Store, tmp_path: Path
) -> None:
    source = """
        from orchestrion import Agent
        from orchestrion.testing import ScriptedModel, call
        from tests.engine.test_worker import transfer

        agent = Agent(
            name="mover",
            model=ScriptedModel([call("transfer", {"amount": 5}), call("transfer", {"amount": 6}), "done"]),
            tools=[transfer],
        )
    """
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "mover", source), "go")
    ledger: list[str] = []
    worker = Worker(runtime, deps=ledger, grace=10)
    working = asyncio.create_task(worker.run())
    while not ledger:
        await asyncio.sleep(0.01)
    worker.stop()  # mid-way through the first transfer
    await asyncio.wait_for(working, 10)

    assert ledger == ["debit 5", "credit 5"]  # the call finished, the next never began
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.QUEUED and record.lease is None

    # The runtime is not stopped for good: an in-process run works as before.
    echo = Agent(name="echo", model=ScriptedModel(["hi"]))
    assert (await runtime.run(echo, "x")).status is RunStatus.COMPLETED
    await Worker(runtime, deps=ledger).run(until_idle=True)
    assert ledger == ["debit 5", "credit 5", "debit 6", "credit 6"]


@workflow
async def branches(ctx: RunContext[Any], input: Any) -> list[int]:
    async def branch(n: int) -> int:
        for i in range(20):
            await ctx.step(f"b{n}-{i}", lambda i=i: asyncio.sleep(0.02, result=i))
        return n

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(branch(n)) for n in range(2)]
    return [t.result() for t in tasks]


async def test_a_drain_of_a_task_group_puts_the_run_back_rather_than_failing_it(
    store: Store, tmp_path: Path
) -> None:
    source = """
        from tests.engine.test_worker import branches as agent
    """
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "tg", source), "go")
    worker = Worker(runtime)
    working = asyncio.create_task(worker.run())
    while not await store.load(run_id):
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(working, 10)
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.QUEUED, record.error
    await Worker(runtime).run(until_idle=True)
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.COMPLETED


arrived: list[str] = []
"""Filled by the test: what `awaits_mail` waits for."""


@workflow
async def awaits_mail(ctx: RunContext[None], input: str) -> str:
    async def mail() -> str:
        while not arrived:
            await asyncio.sleep(0.01)
        return arrived[0]

    first = await ctx.step("first", lambda: asyncio.sleep(0, "early"))
    return f"{first}, then {await ctx.step('mail', mail, wait=True)}"


async def test_a_drain_ends_a_step_that_only_waits_at_once_and_puts_the_run_back(
    store: Store, tmp_path: Path
) -> None:
    source = """
        from tests.engine.test_worker import awaits_mail as agent
    """
    arrived.clear()
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "waits", source), "go")
    worker = Worker(runtime, grace=600)
    working = asyncio.create_task(worker.run())
    while not await store.load(run_id):
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(working, 30)  # not the grace period: the wait was cut off
    record = await store.get_run(run_id)
    assert record is not None and record.status is RunStatus.QUEUED, record.error
    assert [e.key for e in await store.load(run_id)] == ["awaits_mail/first"]
    arrived.append("mail")
    await Worker(runtime).run(until_idle=True)  # the step that waited is run again
    record = await store.get_run(run_id)
    assert record is not None and record.output == "early, then mail"


APPROVED = """
    from orchestrion import Agent, tool
    from orchestrion.testing import ScriptedModel, call

    @tool(effect="write", approval=True)
    async def pay(amount: int) -> str:
        '''Pay.'''
        return f"paid {amount}"

    agent = Agent(
        name="payer", model=ScriptedModel([call("pay", {"amount": 3}), "done"] * 5), tools=[pay]
    )
"""


async def test_kept_answers_are_honoured_by_a_resume_here_and_cannot_be_contradicted(
    store: Store, tmp_path: Path
) -> None:
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "approved", APPROVED), "go")
    await Worker(runtime).run(until_idle=True)
    record = await runtime.get(run_id)
    [pending] = record.pending
    iid = str(pending["id"])  # type: ignore[index]
    with pytest.raises(AnswerError, match="waits for answers"):
        await runtime.requeue(run_id)  # nothing answered: it would only wait again
    await runtime.requeue(run_id, {iid: Approve()})
    with pytest.raises(AnswerError, match="already answered"):
        await runtime.resume(run_id, {iid: {"approved": False, "reason": "no"}})
    result = await runtime.resume(run_id)  # here, with the answer kept for the worker
    assert result.status is RunStatus.COMPLETED and result.output == "done"


async def test_a_run_working_here_cannot_be_put_back_by_this_runtime(store: Store) -> None:
    runtime = Runtime(store)
    started = asyncio.Event()

    @workflow
    async def slow(ctx: RunContext[Any], input: Any) -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "done"

    task = asyncio.create_task(runtime.run(slow, "go", run_id="r1"))
    await started.wait()
    with pytest.raises(RunNotResumable, match="working in this process"):
        await runtime.requeue("r1")
    assert (await task).status is RunStatus.COMPLETED


async def test_a_worker_rejects_settings_that_would_spin(store: Store) -> None:
    runtime = Runtime(store)
    with pytest.raises(UserError, match="poll=0"):
        Worker(runtime, poll=0)
    with pytest.raises(UserError, match="priority="):
        await runtime.submit("orchestrion.demos.loan_team:agent", "x", priority=2**40)


def test_a_worker_on_a_store_used_from_a_second_event_loop_waits_instead_of_spinning(
    tmp_path: Path,
) -> None:
    runtime = Runtime("memory://")

    async def idle() -> None:
        await runtime.store.wait_for_runs(["default"], 0.01)  # type: ignore[attr-defined]

    asyncio.run(idle())

    async def later() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await runtime.store.wait_for_runs(["default"], 0.2)  # type: ignore[attr-defined]
        return loop.time() - started

    assert asyncio.run(later()) >= 0.15  # waited, did not fail at once


@workflow
async def count_boxes(ctx: RunContext[Any], input: Any) -> str:
    boxes = await ctx.interrupt("How many boxes?", name="boxes", answer_type=int)
    return f"{boxes} boxes"


async def test_a_kept_answer_that_does_not_fit_is_asked_again_with_the_error(
    store: Store, tmp_path: Path
) -> None:
    source = """
        from tests.engine.test_worker import count_boxes as agent
    """
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "boxes", source), "go")
    await Worker(runtime).run(until_idle=True)
    [pending] = (await runtime.get(run_id)).pending
    iid = str(pending["id"])  # type: ignore[index]

    await runtime.requeue(run_id, {iid: "twelve"})
    await Worker(runtime).run(until_idle=True)
    record = await runtime.get(run_id)
    assert record.status is RunStatus.INTERRUPTED  # asked again, saying why
    assert record.error is not None and record.error["type"] == "AnswerError"
    assert "answer" not in record.pending[0]  # type: ignore[operator]

    await runtime.requeue(run_id, {iid: 12})  # the corrected answer is taken
    await Worker(runtime).run(until_idle=True)
    record = await runtime.get(run_id)
    assert record.status is RunStatus.COMPLETED and record.output == "12 boxes"


async def test_a_run_whose_workers_keep_dying_is_failed_rather_than_taken_again(
    store: Store, tmp_path: Path
) -> None:
    runtime = Runtime(store)
    run_id = await runtime.submit(target_file(tmp_path, "good", GOOD), "go")
    for _ in range(3):  # three workers took it, and died holding it
        assert len(await queue_of(store).claim_next("doomed", ["default"], ttl=0.05)) == 1
        await asyncio.sleep(0.06)
    await Worker(runtime, max_attempts=3, poll=0.05).run(until_idle=True)
    record = await runtime.get(run_id)
    assert record.status is RunStatus.FAILED and record.error is not None
    assert "taken by workers 4 times without stopping cleanly" in record.error["message"]

    await runtime.requeue(run_id)  # a human put it back: its attempts count afresh
    await Worker(runtime, max_attempts=3).run(until_idle=True)
    assert (await runtime.get(run_id)).status is RunStatus.COMPLETED
