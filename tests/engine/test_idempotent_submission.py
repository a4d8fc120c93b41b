"""`Runtime.run(..., idempotency_key=...)`: a key already used returns the run it
started instead of starting a second one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrion import Agent, ModelRequest, RunStatus, Runtime, UserError, tool
from orchestrion.engine.store import Store
from orchestrion.testing import FunctionModel, ScriptedModel, call


async def test_a_used_key_returns_the_finished_run(store: Store) -> None:
    model = ScriptedModel(["first answer"])
    agent = Agent(name="a", model=model)
    runtime = Runtime(store)
    first = await runtime.run(agent, "go", idempotency_key="order-1")
    again = await runtime.run(agent, "go", idempotency_key="order-1")
    assert first.output == again.output == "first answer"
    assert again.run_id == first.run_id and again.status is RunStatus.COMPLETED
    assert len(model.requests) == 1
    assert len(await runtime.list()) == 1
    other = await runtime.run(
        Agent(name="a", model=ScriptedModel(["b"])), "go", idempotency_key="order-2"
    )
    assert other.run_id != first.run_id


async def test_concurrent_submissions_with_one_key_make_one_run(store: Store) -> None:
    started = 0
    release = asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "once"

    agent = Agent(name="a", model=FunctionModel(slow))
    runtime = Runtime(store)
    submissions = [
        asyncio.create_task(runtime.run(agent, "go", idempotency_key="k")) for _ in range(5)
    ]
    await asyncio.sleep(0.05)
    release.set()
    results = await asyncio.gather(*submissions)
    assert started == 1
    assert {r.run_id for r in results} == {results[0].run_id}
    assert all(r.output == "once" for r in results)


async def test_a_used_key_with_another_input_is_refused(store: Store) -> None:
    agent = Agent(name="a", model=ScriptedModel(["x"]))
    runtime = Runtime(store)
    first = await runtime.run(agent, {"amount": 5}, idempotency_key="pay-1")
    with pytest.raises(
        UserError, match=rf"Idempotency key 'pay-1' was used for run {first.run_id}"
    ):
        await runtime.run(agent, {"amount": 6}, idempotency_key="pay-1")
    with pytest.raises(UserError, match="A new request needs a new key"):
        await runtime.run(Agent(name="b", model="test:x"), {"amount": 5}, idempotency_key="pay-1")


async def test_a_failed_or_waiting_run_is_returned_as_it_stands(store: Store) -> None:
    @tool(effect="write", approval=True)
    def pay(amount: int) -> str:
        return "paid"

    agent = Agent(name="a", model=ScriptedModel([call("pay", {"amount": 5}), "done"]), tools=[pay])
    runtime = Runtime(store)
    first = await runtime.run(agent, "go", idempotency_key="k")
    again = await runtime.run(agent, "go", idempotency_key="k")
    assert again.status is RunStatus.INTERRUPTED
    assert [i.id for i in again.interrupts] == [i.id for i in first.interrupts]

    failing = Agent(
        name="f", model=FunctionModel(lambda r: (_ for _ in ()).throw(ValueError("bad")))
    )
    failed = await runtime.run(failing, "go", idempotency_key="f")
    assert failed.status is RunStatus.FAILED
    again_failed = await runtime.run(failing, "go", idempotency_key="f")
    assert again_failed.status is RunStatus.FAILED and again_failed.error == failed.error


async def test_a_run_that_crashed_is_returned_running_for_a_resume(store: Store) -> None:
    hang, asked = asyncio.Event(), asyncio.Event()

    async def answer(request: ModelRequest) -> str:
        if not hang.is_set():
            asked.set()
            await asyncio.Event().wait()  # the process "dies" here
        return "resumed"

    agent = Agent(name="a", model=FunctionModel(answer))
    task = asyncio.create_task(Runtime(store).run(agent, "go", idempotency_key="k"))
    await asked.wait()  # the run exists and works (however long the store took to open)
    task.cancel()  # a cancellation that is not Runtime.cancel is a crash: resumable
    with pytest.raises(asyncio.CancelledError):
        await task
    elsewhere = Runtime(store)  # e.g. another process, after the crash
    again = await elsewhere.run(agent, "go", idempotency_key="k")
    assert again.status is RunStatus.RUNNING
    assert len(await elsewhere.list()) == 1
    hang.set()
    resumed = await elsewhere.resume(again.run_id, runnable=agent)
    assert resumed.output == "resumed"


async def test_a_submission_racing_the_first_ones_store_write_waits_for_it(store: Store) -> None:
    """The run is reserved in this process before its record is written: a second
    submission that finds the record (a store slow to answer) waits for the run."""
    real_create = store.create_run

    async def slow_ack(*args: Any, **kwargs: Any) -> Any:
        lease = await real_create(*args, **kwargs)
        await asyncio.sleep(0.05)  # committed, not yet acknowledged
        return lease

    store.create_run = slow_ack  # type: ignore[method-assign]
    agent = Agent(name="a", model=ScriptedModel(["only once"]))
    runtime = Runtime(store)
    first = asyncio.create_task(runtime.run(agent, "go", idempotency_key="k"))
    await asyncio.sleep(0.01)
    second = await runtime.run(agent, "go", idempotency_key="k")
    assert second.status is RunStatus.COMPLETED and second.output == "only once"
    assert (await first).run_id == second.run_id


async def test_streaming_with_a_used_key_yields_the_existing_runs_end(store: Store) -> None:
    from orchestrion import RunFinished, StepCompleted

    agent = Agent(name="a", model=ScriptedModel(["streamed once"]))
    runtime = Runtime(store)
    first = [e async for e in runtime.stream(agent, "go", idempotency_key="k")]
    assert any(isinstance(e, StepCompleted) for e in first)
    again = [e async for e in runtime.stream(agent, "go", idempotency_key="k")]
    assert len(again) == 1 and isinstance(again[0], RunFinished)
    assert again[0].result.run_id == first[-1].run_id  # type: ignore[union-attr]
    assert again[0].result.output == "streamed once"


async def test_a_repeat_with_the_same_run_id_and_key_waits_for_the_first(store: Store) -> None:
    real_create = store.create_run

    async def slow_insert(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)  # the record is not written yet when the repeat comes
        return await real_create(*args, **kwargs)

    store.create_run = slow_insert  # type: ignore[method-assign]
    agent = Agent(name="a", model=ScriptedModel(["answer"]))
    runtime = Runtime(store)
    first = asyncio.create_task(runtime.run(agent, "go", run_id="order-1", idempotency_key="k"))
    await asyncio.sleep(0.01)
    again = await runtime.run(agent, "go", run_id="order-1", idempotency_key="k")
    assert again.run_id == "order-1" and again.output == "answer"
    assert (await first).output == "answer"
