"""`@workflow`, `ctx.run`, `ctx.gather` and `Sequential`, on every store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from orchestrion import (
    Agent,
    Approve,
    DeterminismError,
    RunContext,
    RunStatus,
    Runtime,
    Sequential,
    UserError,
    tool,
    workflow,
)
from orchestrion.messages import ModelRequest, UserMessage
from orchestrion.testing import FunctionModel, ScriptedModel, call

from ._support import echo


async def test_pipeline_passes_each_output_to_the_next(runtime: Runtime) -> None:
    pipeline = Sequential(name="docs", members=[echo("extract", "E"), echo("summarize", "S")])
    result = await runtime.run(pipeline, "doc")
    assert result.output == "S(E(doc))"
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert keys == ["docs/step-0/extract/turn-1/model", "docs/step-1/summarize/turn-1/model"]


async def test_transcript_policy_shows_the_task_and_every_output(runtime: Runtime) -> None:
    pipeline = Sequential(
        name="p", members=[echo("a", "A"), echo("b", "B"), echo("c", "C")], context="transcript"
    )
    result = await runtime.run(pipeline, "task")
    assert result.output == "C(Task: task\n\n[a]\nA(task)\n\n[b]\nB(Task: task\n\n[a]\nA(task)))"


async def test_function_policy_and_typed_outputs_between_members(runtime: Runtime) -> None:
    class Parsed(BaseModel):
        skills: list[str]

    parser = Agent(
        name="parse",
        model=ScriptedModel([call("final_result", {"skills": ["sql", "go"]})]),
        output_type=Parsed,
    )
    seen: list[object] = []

    def policy(task: object, outputs: list[tuple[str, object]]) -> object:
        seen.append(outputs)
        return task if not outputs else f"match {outputs[-1][1]['skills']}"

    pipeline = Sequential(name="jobs", members=[parser, echo("match", "M")], context=policy)
    result = await runtime.run(pipeline, "resume text")
    assert result.output == "M(match ['sql', 'go'])"
    assert seen == [[], [("parse", {"skills": ["sql", "go"]})]]


async def test_the_same_member_twice_gets_distinct_keys(runtime: Runtime) -> None:
    twice = echo("polish", "P")
    result = await runtime.run(Sequential(name="p", members=[twice, twice]), "x")
    assert result.output == "P(P(x))"


async def test_patterns_compose(runtime: Runtime) -> None:
    inner = Sequential(name="inner", members=[echo("a", "A"), echo("b", "B")])
    outer = Sequential(name="outer", members=[inner, echo("c", "C")])
    result = await runtime.run(outer, "x")
    assert result.output == "C(B(A(x)))"
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert keys[0] == "outer/step-0/inner/step-0/a/turn-1/model"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name", "members": []}, "name 'bad name' is invalid"),
        ({"name": "p", "members": []}, "needs at least one entry in members"),
        ({"name": "p", "members": ["not an agent"]}, "is not an Agent or a pattern"),
        ({"name": "p", "members": [None], "context": "all"}, "is not an Agent"),
    ],
)
def test_bad_pipelines_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        Sequential(**kwargs)  # type: ignore[arg-type]


async def test_workflow_with_run_gather_step_and_interrupt_resumes_in_place(
    runtime: Runtime,
) -> None:
    calls: list[str] = []

    async def fetch(what: str) -> str:
        calls.append(what)
        return f"{what}-data"

    @workflow
    async def incident(ctx: RunContext[None], input: str) -> str:
        """Triage an incident."""
        logs, metrics = await ctx.gather(
            ctx.step("logs", lambda: fetch("logs")), ctx.step("metrics", lambda: fetch("metrics"))
        )
        verdict = await ctx.run(echo("analyst", "V"), f"{logs}+{metrics}")
        ok = await ctx.interrupt({"verdict": verdict}, name="confirm", answer_type=bool)
        return f"{verdict} confirmed={ok}"

    assert incident.name == "incident" and incident.description == "Triage an incident."
    first = await runtime.run(incident, "db down")
    assert first.status is RunStatus.INTERRUPTED
    assert sorted(calls) == ["logs", "metrics"]
    done = await runtime.resume(first.run_id, {first.interrupts[0].id: True})
    assert done.output == "V(logs-data+metrics-data) confirmed=True"
    assert sorted(calls) == ["logs", "metrics"], "nothing before the interrupt ran again"


async def test_gather_suspends_with_every_branchs_interrupts(runtime: Runtime) -> None:
    @tool(approval=True)
    def act(n: int) -> str:
        return f"acted {n}"

    one, two = (
        Agent(
            name=f"actor{n}", model=ScriptedModel([call("act", {"n": n}), f"done {n}"]), tools=[act]
        )
        for n in (1, 2)
    )

    @workflow
    async def both(ctx: RunContext[None], input: str) -> list[str]:
        return await ctx.gather(ctx.run(one, input), ctx.run(two, input))

    first = await runtime.run(both, "go")
    assert len(first.interrupts) == 2
    done = await runtime.resume(first.run_id, {i.id: Approve() for i in first.interrupts})
    assert done.output == ["done 1", "done 2"]


async def test_running_one_member_twice_without_a_key_is_a_determinism_error(
    runtime: Runtime,
) -> None:
    member = echo("m", "M")

    @workflow
    async def twice(ctx: RunContext[None], input: str) -> str:
        await ctx.run(member, input)
        return str(await ctx.run(member, input))

    with pytest.raises(
        DeterminismError, match=r"twice/m/.*distinct ctx\.run\(\.\.\., key=\.\.\.\)"
    ):
        await runtime.run(twice, "x")


async def test_a_crashed_pipeline_resumes_without_asking_finished_members_again(
    runtime: Runtime,
) -> None:
    requests: list[str] = []
    crash = {"on": True}

    def answer(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        requests.append(first.content)
        if first.content.startswith("A(") and crash["on"]:
            crash["on"] = False
            raise asyncio.CancelledError  # the process dies in the second member
        return f"[{first.content}]"

    a = Agent(name="a", model=FunctionModel(lambda r: f"A({r.messages[0].content})"))  # type: ignore[union-attr]
    b = Agent(name="b", model=FunctionModel(answer))
    pipeline = Sequential(name="p", members=[a, b])
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(pipeline, "x", run_id="p1")
    done = await Runtime(runtime.store).resume("p1", runnable=pipeline)
    assert done.output == "[A(x)]"
    assert requests == ["A(x)", "A(x)"]


async def test_unnamed_interrupts_inside_gather_are_refused(runtime: Runtime) -> None:
    @workflow
    async def approvals(ctx: RunContext[None], input: str) -> list[Any]:
        return await ctx.gather(ctx.interrupt("alice?"), ctx.interrupt("bob?"))

    with pytest.raises(UserError, match=r"inside ctx\.gather needs name="):
        await runtime.run(approvals, "x")
