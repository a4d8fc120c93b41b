"""`Concurrent`: fan-out with aggregation, partial results, timeouts, durability."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrion import (
    Agent,
    BranchResult,
    Concurrent,
    RunContext,
    RunFailed,
    RunStatus,
    Runtime,
    UserError,
    tool,
    workflow,
)
from orchestrion.testing import FunctionModel, ScriptedModel, call

from ._support import echo


def failing(name: str) -> Agent[str]:
    return Agent(name=name, model=ScriptedModel([call("nope"), call("nope")]), max_turns=2)


async def test_fan_out_returns_every_result_in_branch_order(runtime: Runtime) -> None:
    fan = Concurrent(name="fan", branches=[echo("logs", "L"), echo("metrics", "M")])
    result = await runtime.run(fan, "db")
    assert result.output == [
        {"name": "logs", "ok": True, "output": "L(db)", "error": None},
        {"name": "metrics", "ok": True, "output": "M(db)", "error": None},
    ]
    keys = {s.key for s in await runtime.history(result.run_id)}
    assert {"fan/branch-0/logs/turn-1/model", "fan/branch-0", "fan/branch-1"} <= keys


async def test_an_aggregator_agent_receives_the_results_as_json(runtime: Runtime) -> None:
    summary = echo("summary", "SUM")
    fan = Concurrent(name="fan", branches=[echo("a", "A"), echo("b", "B")], aggregator=summary)
    result = await runtime.run(fan, "x")
    assert result.output.startswith("SUM([{") and '"output":"A(x)"' in result.output


async def test_partial_results_with_min_success_describe_each_failure(runtime: Runtime) -> None:
    seen: list[list[BranchResult]] = []

    def combine(results: list[BranchResult]) -> str:
        seen.append(results)
        return " | ".join(r.output if r.ok else f"{r.name} failed" for r in results)

    fan = Concurrent(
        name="fan",
        branches=[echo("a", "A"), failing("b"), echo("c", "C")],
        aggregator=combine,
        min_success=2,
    )
    result = await runtime.run(fan, "x")
    assert result.output == "A(x) | b failed | C(x)"
    [results] = seen
    assert results[1].error["type"] == "MaxTurnsExceeded"


async def test_too_few_successes_fails_the_run_naming_the_failures(runtime: Runtime) -> None:
    fan = Concurrent(
        name="fan", branches=[echo("a", "A"), failing("b"), failing("c")], min_success=2
    )
    result = await runtime.run(fan, "x")
    assert result.status is RunStatus.FAILED
    assert result.error["type"] == "NotEnoughBranches"
    assert "1 of 3 branches succeeded, 2 needed" in result.error["message"]
    assert "b: MaxTurnsExceeded" in result.error["message"]
    with pytest.raises(RunFailed, match="NotEnoughBranches"):
        _ = result.output


async def test_a_slow_branch_times_out_alone_and_is_retried_on_resume(runtime: Runtime) -> None:
    release = asyncio.Event()
    attempts: list[str] = []

    @workflow
    async def slow(ctx: RunContext[None], input: str) -> str:
        attempts.append("slow")
        await release.wait()
        return "slow done"

    fan = Concurrent(name="fan", branches=[slow, echo("fast", "F")], timeout=0.05)
    first = await runtime.run(fan, "x", run_id="t1")
    assert first.status is RunStatus.FAILED
    assert (
        first.error is not None
        and "slow: TimeoutError: timed out after 0.05 s" in first.error["message"]
    )

    release.set()
    done = await runtime.resume("t1")
    assert [r["output"] for r in done.output] == ["slow done", "F(x)"]
    assert attempts == ["slow", "slow"], (
        "the finished fast branch was replayed, the slow one retried"
    )


async def test_partial_results_survive_within_a_run_when_min_success_is_met(
    runtime: Runtime,
) -> None:
    @workflow
    async def stuck(ctx: RunContext[None], input: str) -> str:
        await asyncio.Event().wait()
        return "never"

    fan = Concurrent(name="fan", branches=[stuck, echo("fast", "F")], min_success=1, timeout=0.05)
    result = await runtime.run(fan, "x")
    stuck_result, fast_result = result.output
    assert stuck_result["ok"] is False and stuck_result["error"]["type"] == "TimeoutError"
    assert fast_result == {"name": "fast", "ok": True, "output": "F(x)", "error": None}


async def test_no_barrier_between_branches(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @workflow
    async def waits(ctx: RunContext[None], input: str) -> str:
        await gate.wait()
        return "late"

    @workflow
    async def quick(ctx: RunContext[None], input: str) -> str:
        gate.set()  # only runs if it does not wait for the other branch
        return "early"

    result = await runtime.run(Concurrent(name="fan", branches=[waits, quick]), "x")
    assert [r["output"] for r in result.output] == ["late", "early"]
    order = [s.key for s in await runtime.history(result.run_id)]
    assert order.index("fan/branch-1") < order.index("fan/branch-0")


async def test_finished_branches_do_not_run_again_after_a_crash(runtime: Runtime) -> None:
    runs: list[str] = []
    crash = {"on": True}

    def branch(n: int) -> Any:
        @workflow(name=f"b{n}")
        async def work(ctx: RunContext[None], input: str) -> str:
            runs.append(f"b{n}")
            if n == 2 and crash["on"]:
                await asyncio.sleep(0.01)  # let the others finish first
                crash["on"] = False
                raise asyncio.CancelledError  # the process dies in branch 2
            return f"b{n} ok"

        return work

    fan = Concurrent(name="fan", branches=[branch(0), branch(1), branch(2)])
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(fan, "x", run_id="f1")
    assert sorted(runs) == ["b0", "b1", "b2"]

    done = await Runtime(runtime.store).resume("f1", runnable=fan)
    assert [r["output"] for r in done.output] == ["b0 ok", "b1 ok", "b2 ok"]
    assert sorted(runs) == ["b0", "b1", "b2", "b2"], "only the unfinished branch ran again"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branches": []}, "needs at least one entry in branches"),
        ({"branches": [echo("a", "A")], "min_success": 2}, r"min_success=2 is outside 0\.\.1"),
        ({"branches": [echo("a", "A")], "aggregator": 42}, "aggregator 42 cannot run"),
    ],
)
def test_bad_fan_outs_fail_at_definition_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        Concurrent(name="fan", **kwargs)


async def test_a_branch_timeout_that_cuts_off_a_write_fails_the_run_not_the_branch(
    runtime: Runtime,
) -> None:
    keys: list[str] = []
    slow = {"on": True}

    @tool(effect="write")
    async def transfer(ctx: RunContext[None], amount: int) -> str:
        keys.append(ctx.idempotency_key)
        if slow["on"]:
            await asyncio.sleep(10)  # cut off by the branch's timeout
        return f"moved {amount}"

    payer = Agent(
        name="payer",
        model=ScriptedModel([call("transfer", {"amount": 5}, id="t"), "paid"]),
        tools=[transfer],
    )
    fan = Concurrent(
        name="fan",
        branches=[payer, Agent(name="quick", model=FunctionModel(lambda r: "quick ok"))],
        min_success=1,
        timeout=0.05,
    )
    first = await runtime.run(fan, "go")
    assert first.status is RunStatus.FAILED, "not a failed branch the others can paper over"
    assert first.error is not None and first.error["type"] == "WriteUncertain"
    assert "fan/branch-0/payer/turn-1/tool/transfer#t" in first.error["message"]

    slow["on"] = False
    done = await runtime.resume(first.run_id)
    assert [r["ok"] for r in done.output] == [True, True]
    assert len(keys) == 2 and keys[0] == keys[1], "executed again with the same idempotency key"
