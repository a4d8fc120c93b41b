"""Guards found in review: the right code resumes a run, one resume at a time,
open questions survive a crash, edits are checked, model text cannot break keys."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    RunContext,
    RunNotResumable,
    RunStatus,
    Runtime,
    tool,
)
from orchestrion.keys import tool_keys
from orchestrion.messages import ModelResponse, ToolCall
from orchestrion.testing import ScriptedModel, call


async def test_resume_uses_the_runs_own_agent_not_a_namesake(runtime: Runtime) -> None:
    @tool(approval=True)
    def refund(amount: int) -> str:
        """Refund."""
        return f"refunded {amount}"

    first = Agent(
        name="support",
        model=ScriptedModel([call("refund", {"amount": 5}), "v1 done"]),
        tools=[refund],
    )
    namesake = Agent(name="support", model=ScriptedModel(["v2 answer"]))
    waiting = await runtime.run(first, "refund me")
    await runtime.run(namesake, "hello")

    done = await runtime.resume(waiting.run_id, {waiting.interrupts[0].id: Approve()})

    assert done.output == "v1 done"
    steps = {s.key: s.result for s in await runtime.history(waiting.run_id)}
    assert steps["support/turn-1/tool/refund#call_1_0"]["content"] == "refunded 5"


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


async def test_open_questions_stay_answerable_after_a_crash_during_resume(runtime: Runtime) -> None:
    hang = asyncio.Event()

    @tool(effect="write", approval=True)
    async def pay(n: int) -> str:
        """Pay."""
        if n == 1 and not hang.is_set():
            await asyncio.Event().wait()
        return f"paid {n}"

    model = ScriptedModel(
        [[call("pay", {"n": 1}, id="c1"), call("pay", {"n": 2}, id="c2")], "done"]
    )
    waiting = await runtime.run(Agent(name="p", model=model, tools=[pay]), "go")
    first, second = (i.id for i in waiting.interrupts)
    task = asyncio.create_task(runtime.resume(waiting.run_id, {first: Approve()}))
    await asyncio.sleep(0.05)
    task.cancel()  # the resume dies while paying n=1
    await asyncio.gather(task, return_exceptions=True)
    hang.set()

    record = await runtime.get(waiting.run_id)
    assert record.status is RunStatus.RUNNING
    assert second in [p["id"] for p in record.pending]
    done = await runtime.resume(waiting.run_id, {second: Approve()})
    assert done.status is RunStatus.COMPLETED


async def test_fork_checks_an_edited_answer_where_the_run_asks_for_it(runtime: Runtime) -> None:
    class Flow:
        name = "flow"

        async def invoke(self, ctx: RunContext[None], input: object) -> int:
            count: int = await ctx.interrupt("How many?", name="count", answer_type=int)
            return count * 2

    flow = Flow()
    waiting = await runtime.run(flow, None, run_id="orig")
    done = await runtime.resume("orig", {waiting.interrupts[0].id: 3})
    assert done.output == 6

    with pytest.raises(AnswerError, match=r"'seven'.*valid integer"):
        await runtime.fork("orig", at="flow/count", edit="seven", new_run_id="bad")
    assert (await runtime.get("bad")).status is RunStatus.FAILED
    assert (await runtime.get("orig")).output == 6

    forked = await runtime.fork("orig", at="flow/count", edit=5, new_run_id="good")
    assert forked.output == 10


async def test_tools_asked_for_next_to_the_final_answer_still_run(runtime: Runtime) -> None:
    paid: list[int] = []

    class Summary(BaseModel):
        summary: str

    @tool
    def pay(n: int) -> str:
        paid.append(n)
        return "ok"

    model = ScriptedModel([[call("pay", {"n": 5}), call("final_result", {"summary": "paid 5"})]])
    result = await runtime.run(Agent(name="a", model=model, tools=[pay], output_type=Summary), "go")

    assert result.output == Summary(summary="paid 5")
    assert paid == [5]


@pytest.mark.parametrize(
    "calls",
    [
        [ToolCall("b#c", "a", "{}"), ToolCall("c", "a#b", "{}")],
        [ToolCall("x", "a", "{}"), ToolCall("x", "a", "{}"), ToolCall("x~0", "a", "{}")],
        [ToolCall("", "a", "{}"), ToolCall("", "a/../b", "{}")],
    ],
)
async def test_model_chosen_names_and_ids_never_collide_in_step_keys(
    runtime: Runtime, calls: list[ToolCall]
) -> None:
    @tool
    def a() -> str:
        return "ok"

    keys = tool_keys("ag/turn-1", tuple(calls))
    assert len(set(keys)) == len(keys)
    assert all(k.count("/") == 3 for k in keys), "model text adds no path segments"
    model = ScriptedModel([ModelResponse(tool_calls=tuple(calls)), "done"])
    result = await runtime.run(Agent(name="ag", model=model, tools=[a]), "go")
    assert result.output == "done"


async def test_a_tool_returning_something_that_is_not_json_says_so(runtime: Runtime) -> None:
    class Receipt:
        pass

    @tool
    def pay() -> object:
        return Receipt()

    result = await runtime.run(
        Agent(name="a", model=ScriptedModel([call("pay")]), tools=[pay]), "go"
    )
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "returned a Receipt, which is not JSON" in result.error["message"]
