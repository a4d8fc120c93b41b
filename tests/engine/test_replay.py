"""Replay: resuming after a crash repeats nothing that completed; keys are deterministic."""

import asyncio
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion import (
    Agent,
    Approve,
    DeterminismError,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    tool,
)
from orchestrion.errors import RunNotResumable
from orchestrion.testing import ScriptedModel, call

from ..conftest import drop_schema, make_store
from ._support import Crash, tool_results


class CrashOnce:
    """Raises `Crash` the first time it is called with `when` true, then behaves."""

    def __init__(self) -> None:
        self.crashed = False

    def maybe(self, when: bool = True) -> None:
        if when and not self.crashed:
            self.crashed = True
            raise Crash("process died")


# -- agents ------------------------------------------------------------------------


async def test_resume_after_a_crash_in_a_tool_repeats_nothing(runtime: Runtime) -> None:
    calls: Counter[str] = Counter()
    crash = CrashOnce()

    @tool
    async def lookup(q: str) -> str:
        calls["lookup"] += 1
        return f"found {q}"

    @tool
    async def flaky(q: str) -> str:
        calls["flaky"] += 1
        crash.maybe()
        return f"flaky {q}"

    model = ScriptedModel(
        [call("lookup", {"q": "a"}), call("flaky", {"q": "b"}), call("lookup", {"q": "c"}), "done"]
    )
    agent = Agent(name="worker", model=model, tools=[lookup, flaky])
    with pytest.raises(Crash):
        await runtime.run(agent, "go", run_id="r1")
    assert len(model.requests) == 2
    assert calls == Counter({"lookup": 1, "flaky": 1})
    crashed = await runtime.get("r1")
    assert crashed.status == RunStatus.FAILED
    assert crashed.error is not None and crashed.error["type"] == "Crash"

    fresh = Runtime(runtime.store)
    result = await fresh.resume("r1", runnable=agent)
    assert result.status == RunStatus.COMPLETED
    assert result.output == "done"
    assert len(model.requests) == 4  # turns 3 and 4 only
    assert calls == Counter({"lookup": 2, "flaky": 2})  # flaky re-executed: it never completed
    model.assert_complete()
    assert [r.content for r in tool_results(model.requests[3])] == [
        "found a",
        "flaky b",
        "found c",
    ]
    assert (await fresh.get("r1")).status == RunStatus.COMPLETED


async def test_resume_with_a_new_model_object_replays_recorded_responses(
    runtime: Runtime,
) -> None:
    """A new process builds a new model: it is asked only for what the journal lacks."""
    crash = CrashOnce()

    @tool
    async def step_tool(n: int) -> str:
        crash.maybe(n == 2)
        return f"ok {n}"

    first_model = ScriptedModel([call("step_tool", {"n": 1}), call("step_tool", {"n": 2})])
    with pytest.raises(Crash):
        await runtime.run(Agent(name="w", model=first_model, tools=[step_tool]), "go", run_id="r")
    first_model.assert_complete()

    second_model = ScriptedModel(["finished"])
    agent = Agent(name="w", model=second_model, tools=[step_tool])
    result = await Runtime(runtime.store).resume("r", runnable=agent)
    assert result.output == "finished"
    second_model.assert_complete()
    assert [r.content for r in tool_results(second_model.requests[0])] == ["ok 1", "ok 2"]


async def test_crash_inside_the_model_request(runtime: Runtime) -> None:
    crash = CrashOnce()
    script = [call("noop"), "answer"]
    asked: list[int] = []

    async def answer(request: Any) -> Any:
        asked.append(len(request.messages))
        crash.maybe(len(asked) == 2)
        return script[len(tool_results(request))]

    from orchestrion.testing import FunctionModel

    @tool
    async def noop() -> str:
        return "nothing"

    agent = Agent(name="m", model=FunctionModel(answer), tools=[noop])
    with pytest.raises(Crash):
        await runtime.run(agent, "go", run_id="m1")
    result = await Runtime(runtime.store).resume("m1", runnable=agent)
    assert result.output == "answer"
    assert asked == [1, 3, 3]  # turn 1 once, turn 2 twice (the first attempt died)


async def test_write_tool_idempotency_key_is_stable_across_a_crash(runtime: Runtime) -> None:
    seen: list[tuple[str, str]] = []
    crash = CrashOnce()

    @tool(effect="write")
    async def pay(ctx: RunContext[None], amount: float) -> str:
        seen.append((ctx.key, ctx.idempotency_key))
        crash.maybe()  # dies after the bank got the request, before we recorded completion
        return f"paid {amount}"

    model = ScriptedModel([call("pay", {"amount": 10}), "Paid."])
    agent = Agent(name="payer", model=model, tools=[pay])
    with pytest.raises(Crash):
        await runtime.run(agent, "pay", run_id="pay-1")
    steps = await runtime.history("pay-1")
    assert [(s.key, s.status) for s in steps] == [
        ("payer/turn-1/model", StepStatus.COMPLETED),
        ("payer/turn-1/tool/pay#call_1_0", StepStatus.STARTED),
    ]

    result = await Runtime(runtime.store).resume("pay-1", runnable=agent)
    assert result.output == "Paid."
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert len(seen[0][1]) == 32
    steps = await runtime.history("pay-1")
    assert steps[1].status == StepStatus.COMPLETED
    assert steps[1].result == {"content": "paid 10.0", "is_error": False}
    assert len(model.requests) == 2

    # Another run of the same code gets another key for the same step.
    model2 = ScriptedModel([call("pay", {"amount": 10}), "Paid."])
    await runtime.run(Agent(name="payer", model=model2, tools=[pay]), "pay", run_id="pay-2")
    assert seen[2][0] == seen[0][0]
    assert seen[2][1] != seen[0][1]


async def test_completed_write_tool_is_not_re_executed_after_a_crash(runtime: Runtime) -> None:
    payments: list[float] = []
    crash = CrashOnce()

    @tool(effect="write")
    async def pay(amount: float) -> str:
        payments.append(amount)
        return "paid"

    @tool
    async def notify() -> str:
        crash.maybe()
        return "notified"

    model = ScriptedModel([[call("pay", {"amount": 5}), call("notify")], "done"])
    agent = Agent(name="a", model=model, tools=[pay, notify])
    with pytest.raises(Crash):
        await runtime.run(agent, "go", run_id="w")
    assert payments == [5.0]
    result = await Runtime(runtime.store).resume("w", runnable=agent)
    assert result.output == "done"
    assert payments == [5.0]


def _hanging_agent(entered: asyncio.Event, release: asyncio.Event) -> Agent[str]:
    @tool
    async def hang() -> str:
        entered.set()
        await release.wait()
        return "released"

    return Agent(name="a", model=ScriptedModel([call("hang"), "done"]), tools=[hang])


async def test_runtime_cancel_ends_the_run_for_good(runtime: Runtime) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runtime.run(_hanging_agent(entered, release), "go", run_id="c"))
    await entered.wait()
    await runtime.cancel("c")
    assert task.cancelled()
    assert (await runtime.get("c")).status == RunStatus.CANCELLED
    with pytest.raises(RunNotResumable, match="cancelled"):
        await runtime.resume("c")


async def test_a_cancelled_task_is_a_crash_and_stays_resumable(runtime: Runtime) -> None:
    """Ctrl-C or a caller's timeout is not a decision to end the run."""
    entered, release = asyncio.Event(), asyncio.Event()
    agent = _hanging_agent(entered, release)
    task = asyncio.create_task(runtime.run(agent, "go", run_id="c"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await runtime.get("c")).status == RunStatus.RUNNING
    release.set()
    result = await runtime.resume("c")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "done"


# -- workflow-like runnables and ctx.step ------------------------------------------


class Workflow:
    """An object with a name and `async invoke(ctx, input)`: the Runnable protocol."""

    def __init__(self, name: str, body: Callable[[RunContext[Any], Any], Awaitable[Any]]) -> None:
        self.name = name
        self.invoke = body


async def test_ctx_step_results_are_journaled_and_replayed(runtime: Runtime) -> None:
    calls: Counter[str] = Counter()

    async def body(ctx: RunContext[Any], input: Any) -> Any:
        async def fetch() -> dict[str, Any]:
            calls["fetch"] += 1
            return {"rows": [1, 2, 3], "for": input}

        async def save() -> str:
            calls["save"] += 1
            return "saved"

        rows = await ctx.step("fetch", fetch)
        ok = await ctx.interrupt({"rows": len(rows["rows"])}, name="confirm", answer_type=bool)
        saved = await ctx.step("save", save) if ok else "skipped"
        return {"rows": rows, "saved": saved}

    flow = Workflow("pipeline", body)
    result = await runtime.run(flow, "q1")
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    assert interrupt.key == "pipeline/confirm"
    assert interrupt.payload == {"rows": 3}
    assert calls == Counter({"fetch": 1})

    done = await runtime.resume(result.run_id, {interrupt.id: True})
    assert done.status == RunStatus.COMPLETED
    assert done.output == {"rows": {"rows": [1, 2, 3], "for": "q1"}, "saved": "saved"}
    assert calls == Counter({"fetch": 1, "save": 1})
    steps = await runtime.history(result.run_id)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        ("pipeline/fetch", "step", StepStatus.COMPLETED),
        ("pipeline/confirm", "interrupt", StepStatus.COMPLETED),
        ("pipeline/save", "step", StepStatus.COMPLETED),
    ]
    assert steps[0].result == {"rows": [1, 2, 3], "for": "q1"}
    assert steps[1].result is True


async def test_ctx_step_is_not_called_again_after_a_crash(runtime: Runtime) -> None:
    calls: Counter[str] = Counter()
    crash = CrashOnce()

    class Point(pydantic.BaseModel):
        x: int

    async def body(ctx: RunContext[Any], input: Any) -> Any:
        async def first() -> Point:
            calls["first"] += 1
            return Point(x=1)

        async def second() -> int:
            calls["second"] += 1
            crash.maybe()
            return 2

        a = await ctx.step("first", first)
        b = await ctx.step("second", second)
        return [a, b]

    flow = Workflow("flow", body)
    with pytest.raises(Crash):
        await runtime.run(flow, None, run_id="f")
    result = await Runtime(runtime.store).resume("f", runnable=flow)
    assert result.output == [{"x": 1}, 2]  # a step's result is its JSON form, live or replayed
    assert calls == Counter({"first": 1, "second": 2})


async def test_a_failed_ctx_step_runs_again_on_resume(runtime: Runtime) -> None:
    attempts: list[int] = []

    async def body(ctx: RunContext[Any], input: Any) -> Any:
        async def flaky() -> str:
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                raise ValueError("try later")
            return "ok"

        return await ctx.step("flaky", flaky)

    flow = Workflow("retrying", body)
    with pytest.raises(ValueError, match="try later"):
        await runtime.run(flow, None, run_id="s")
    record = await runtime.get("s")
    assert record.status == RunStatus.FAILED
    assert (await runtime.history("s"))[0].status == StepStatus.FAILED
    result = await runtime.resume("s")
    assert result.output == "ok"
    assert attempts == [1, 2]


async def test_unnamed_steps_and_interrupts_are_numbered(runtime: Runtime) -> None:
    async def body(ctx: RunContext[Any], input: Any) -> Any:
        first = await ctx.interrupt("first?")
        second = await ctx.interrupt("second?")
        return [first, second]

    result = await runtime.run(Workflow("ask", body), None)
    assert [i.key for i in result.interrupts] == ["ask/interrupt-1"]
    result = await runtime.resume(result.run_id, {result.interrupts[0].id: "one"})
    assert [i.key for i in result.interrupts] == ["ask/interrupt-2"]
    result = await runtime.resume(result.run_id, {result.interrupts[0].id: "two"})
    assert result.output == ["one", "two"]


def _site(marker: str) -> str:
    lines = Path(__file__).read_text().splitlines()
    [number] = [i + 1 for i, line in enumerate(lines) if line.rstrip().endswith(f"# {marker}")]
    return f"{__file__}:{number}"


class StepTwice:
    name = "twice"

    async def invoke(self, ctx: RunContext[None], input: object) -> object:
        async def fetch() -> int:
            return 1

        await ctx.step("fetch", fetch)  # first-fetch-site
        await ctx.step("fetch", fetch)  # second-fetch-site
        return "unreachable"


async def test_same_step_name_twice_is_a_determinism_error_naming_both_sites(
    runtime: Runtime,
) -> None:
    with pytest.raises(DeterminismError) as info:
        await runtime.run(StepTwice(), None, run_id="d")
    message = str(info.value)
    assert "'twice/fetch'" in message
    assert "used twice in run d" in message
    assert f"first by {_site('first-fetch-site')}, then by {_site('second-fetch-site')}" in message


async def test_determinism_error_marks_the_run_failed(runtime: Runtime) -> None:
    with pytest.raises(DeterminismError):
        await runtime.run(StepTwice(), None, run_id="d")
    record = await runtime.get("d")
    assert record.status == RunStatus.FAILED
    assert record.error is not None and record.error["type"] == "DeterminismError"


# -- property: a crash anywhere, then resume, gives the run a straight run gives ------------


turns_strategy = st.lists(
    st.lists(st.sampled_from(["read", "write"]), min_size=1, max_size=3), min_size=1, max_size=4
)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(turns=turns_strategy, data=st.data())
async def test_crash_anywhere_then_resume_matches_a_straight_run(
    store_kind: str, tmp_path: Path, turns: list[list[str]], data: st.DataObject
) -> None:
    total = sum(len(t) for t in turns)
    crash_at = data.draw(st.integers(0, total - 1), label="crash_at")
    executions: Counter[str] = Counter()
    state = {"count": 0, "crash_at": -1}

    async def effect(n: int) -> str:
        position = state["count"]
        state["count"] += 1
        if position == state["crash_at"]:
            raise Crash(f"died in call {n}")
        executions[f"{state['run']}:{n}"] += 1
        return f"did {n}"

    @tool
    async def read(n: int) -> str:
        return await effect(n)

    @tool(effect="write")
    async def write(n: int) -> str:
        return await effect(n)

    def script() -> list[Any]:
        n = 0
        items: list[Any] = []
        for turn in turns:
            batch = []
            for name in turn:
                batch.append(call(name, {"n": n}))
                n += 1
            items.append(batch)
        return [*items, "finished"]

    def views(steps: list[Any]) -> dict[str, tuple[str, Any]]:
        # Parallel calls may complete in another order after a crash: compare by key.
        return {s.key: (s.status, s.result) for s in steps}

    store = make_store(store_kind, Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        runtime = Runtime(store)
        state.update(run="straight", count=0, crash_at=-1)  # type: ignore[arg-type]
        straight_model = ScriptedModel(script())
        agent = Agent(name="p", model=straight_model, tools=[read, write])
        straight = await runtime.run(agent, "go", run_id="straight")
        assert straight.output == "finished"

        state.update(run="crashed", count=0, crash_at=crash_at)  # type: ignore[arg-type]
        crashed_model = ScriptedModel(script())
        agent = Agent(name="p", model=crashed_model, tools=[read, write])
        with pytest.raises(Crash):
            await runtime.run(agent, "go", run_id="crashed")
        resumed = await Runtime(store).resume("crashed", runnable=agent)
        assert resumed.output == "finished"
        crashed_model.assert_complete()
        assert len(crashed_model.requests) == len(straight_model.requests) == len(turns) + 1

        assert views(await runtime.history("crashed")) == views(await runtime.history("straight"))
        # Every tool call took effect exactly once in each run.
        assert executions == Counter(
            {f"{run}:{n}": 1 for run in ("straight", "crashed") for n in range(total)}
        )
    finally:
        await store.close()
        await drop_schema(store)  # one PostgreSQL schema per example, else left behind


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
