"""Traces (`engine.tracing`): spans captured with the OpenTelemetry SDK's in-memory
exporter, checked for names, attributes, parents, replay and one trace per run."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orchestrion import (
    Agent,
    Approve,
    Instrumentation,
    ModelRequest,
    Policy,
    Reject,
    Retry,
    RunStatus,
    Runtime,
    UserError,
    keys,
    register_secret,
    tool,
)
from orchestrion.demos import DEMOS
from orchestrion.demos.runner import run_approving
from orchestrion.engine.store import Store
from orchestrion.errors import StoreError
from orchestrion.redact import REDACTED
from orchestrion.stores.memory import MemoryStore
from orchestrion.testing import (
    Faults,
    FaultyModel,
    FunctionModel,
    ScriptedModel,
    ServerError,
    TestModel,
    call,
)

from ._support import Crash, approving_agent, payer_that_dies_once


class Traces:
    """Spans a runtime made, as the SDK's in-memory exporter got them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def runtime(self, store: Store | str, *, content: bool = False, **kw: Any) -> Runtime:
        settings = Instrumentation(tracer_provider=self.provider, capture_content=content)
        return Runtime(store, instrument=settings, **kw)

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        found = [s for s in self.spans if s.context.span_id == span.parent.span_id]
        return found[0] if found else None

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent and s.parent.span_id == span.context.span_id]

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans if self.parent(s) is None]


@pytest.fixture
def traces() -> Traces:
    return Traces()


@tool
def get_balance(account: str) -> int:
    """The balance of an account."""
    return 100


async def test_an_agent_run_is_an_invoke_agent_span_over_its_chats_and_tool_calls(
    traces: Traces,
) -> None:
    agent = Agent(name="bank", model=TestModel(), tools=[get_balance], description="Banking.")
    async with traces.runtime("memory://") as runtime:
        result = await runtime.run(agent, "balance?")
    assert result.status is RunStatus.COMPLETED
    root = traces.one("invoke_agent bank")
    assert traces.roots() == [root] and root.parent is None
    assert root.kind is SpanKind.INTERNAL
    assert root.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "bank",
        "gen_ai.agent.description": "Banking.",
        "gen_ai.conversation.id": result.run_id,
        "orchestrion.run.id": result.run_id,
        "orchestrion.run.resumed": False,
        "orchestrion.run.status": "completed",
        "gen_ai.usage.input_tokens": result.usage.input_tokens,
        "gen_ai.usage.output_tokens": result.usage.output_tokens,
    }
    chats = traces.named("chat schema")
    [tool_span] = traces.named("execute_tool get_balance")
    assert len(chats) == 2
    assert {traces.parent(s) for s in [*chats, tool_span]} == {root}
    first, second = sorted(chats, key=lambda s: s.start_time or 0)
    assert first.kind is SpanKind.CLIENT
    assert first.attributes is not None
    assert {
        k: first.attributes[k] for k in first.attributes if not k.startswith("gen_ai.usage")
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "test",
        "gen_ai.request.model": "schema",
        "gen_ai.response.model": "schema",
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.conversation.id": result.run_id,
        "orchestrion.step.key": "bank/turn-1/model",
    }
    assert first.attributes["gen_ai.usage.output_tokens"] > 0
    assert (first.end_time or 0) <= (tool_span.start_time or 0)
    assert (tool_span.end_time or 0) <= (second.start_time or 0)
    assert tool_span.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_balance",
        "gen_ai.tool.call.id": "call_1_0",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "The balance of an account.",
        "orchestrion.tool.effect": "read",
        "gen_ai.conversation.id": result.run_id,
        "orchestrion.step.key": "bank/turn-1/tool/get_balance#call_1_0",
    }
    assert all(s.status.status_code is StatusCode.UNSET for s in traces.spans)


async def test_content_is_recorded_only_when_asked_and_never_a_secret(traces: Traces) -> None:
    register_secret("sk-live-0123456789abcdef")

    @tool
    def leak(account: str) -> str:
        """Returns what it should not."""
        return "token sk-live-0123456789abcdef"

    agent = Agent(name="bank", instructions="Be brief.", model=TestModel(), tools=[leak])
    async with traces.runtime("memory://") as runtime:
        await runtime.run(agent, "hello")
    assert not any("gen_ai.input.messages" in (s.attributes or {}) for s in traces.spans)
    traces.exporter.clear()

    async with traces.runtime("memory://", content=True) as runtime:
        await runtime.run(agent, "hello")
    chats = sorted(traces.named("chat schema"), key=lambda s: s.start_time or 0)
    first = chats[0].attributes or {}
    assert first["gen_ai.input.messages"] == (
        '[{"role":"user","parts":[{"type":"text","content":"hello"}]}]'
    )
    assert first["gen_ai.system_instructions"] == '[{"type":"text","content":"Be brief."}]'
    assert '"type":"tool_call"' in str(first["gen_ai.output.messages"])
    tool_attributes = traces.one("execute_tool leak").attributes or {}
    assert tool_attributes["gen_ai.tool.call.arguments"] == '{"account":"a"}'
    assert tool_attributes["gen_ai.tool.call.result"] == f"token {REDACTED}"
    everything = str([dict(s.attributes or {}) for s in traces.spans])
    assert "sk-live-0123456789abcdef" not in everything
    assert REDACTED in str(chats[1].attributes)


def _check_tree(traces: Traces) -> ReadableSpan:
    """Every span of one trace, under one root; the root."""
    spans = traces.spans
    assert len({s.context.trace_id for s in spans}) == 1
    [root] = traces.roots()
    assert all(traces.parent(s) is not None for s in spans if s is not root)
    return root


@pytest.mark.parametrize(
    ("demo", "root"),
    [
        ("loan-team", "invoke_workflow loan-team"),
        ("support-triage", "invoke_workflow support-triage"),
        ("incident-response", "invoke_workflow incident-response"),
        ("payroll-help", "invoke_workflow payroll-help"),
        ("document-processing", "invoke_workflow document-processing"),
        ("research-loop", "invoke_workflow research"),
    ],
)
async def test_each_pattern_is_one_tree_of_spans_across_its_approvals(
    traces: Traces, demo: str, root: str
) -> None:
    module = importlib.import_module(DEMOS[demo])
    async with traces.runtime("memory://") as runtime:
        result = await run_approving(runtime, module.agent, module.TASK)
    assert result.status is RunStatus.COMPLETED
    top = _check_tree(traces)
    executions = [s for s in traces.spans if (s.attributes or {}).get("orchestrion.run.id")]
    assert top.name == root and top in executions
    for resumed in executions:  # an approval's resume: under the run's first execution
        assert resumed is top or traces.parent(resumed) is top
    agents = [s for s in traces.spans if s.name.startswith("invoke_agent ")]
    assert agents and all(s.kind is SpanKind.INTERNAL for s in agents)
    for span in traces.spans:
        if span.name.startswith(("chat ", "execute_tool ")):
            owner = traces.parent(span)
            while owner is not None and not owner.name.startswith("invoke_"):
                owner = traces.parent(owner)
            assert owner is not None, span.name


async def test_a_delegation_is_the_workers_span_under_the_managers_tool_call(
    traces: Traces,
) -> None:
    module = importlib.import_module(DEMOS["loan-team"])
    async with traces.runtime("memory://") as runtime:
        await run_approving(runtime, module.agent, module.TASK)
    delegations = [s for s in traces.spans if s.name.startswith("execute_tool delegate_to_")]
    assert delegations
    for span in delegations:
        worker = (span.attributes or {})["orchestrion.delegate_to"]
        assert [c.name for c in traces.children(span)] == [f"invoke_agent {worker}"]
        manager = traces.parent(span)
        assert manager is not None and manager.name.startswith("invoke_agent ")


async def test_a_handoff_is_an_event_on_the_agent_that_hands_off(traces: Traces) -> None:
    module = importlib.import_module(DEMOS["support-triage"])
    async with traces.runtime("memory://") as runtime:
        await run_approving(runtime, module.agent, module.TASK)
    handoffs = [
        (s.name, e.attributes)
        for s in traces.spans
        for e in s.events
        if e.name == "orchestrion.handoff"
    ]
    assert handoffs
    for name, attributes in handoffs:
        assert attributes is not None
        assert name == f"invoke_agent {attributes['orchestrion.from']}"
        assert traces.named(f"invoke_agent {attributes['orchestrion.transfer_to']}")


async def test_a_resumed_run_is_one_trace_and_its_replayed_steps_make_no_spans(
    traces: Traces, store: Store
) -> None:
    agent = payer_that_dies_once(5.0)
    first = traces.runtime(store)
    with pytest.raises(Crash):
        await first.run(agent, "pay it", run_id="r1")
    before = traces.spans
    [first_root] = [s for s in before if s.name == "invoke_agent payer"]
    assert [s.name for s in before if s is not first_root] == ["chat scripted", "execute_tool pay"]
    assert (await first.get("r1")).trace is not None
    traces.exporter.clear()

    result = await traces.runtime(store).resume("r1", runnable=agent)
    assert result.status is RunStatus.COMPLETED
    after = traces.spans
    [root] = [s for s in after if s.name == "invoke_agent payer"]
    assert root.parent is not None and root.parent.span_id == first_root.context.span_id
    assert root.context.trace_id == first_root.context.trace_id
    assert (root.attributes or {})["orchestrion.run.resumed"] is True
    # turn 1's model step replayed: no span; the payment that never finished ran again.
    names = sorted(s.name for s in after if s is not root)
    assert names == ["chat scripted", "execute_tool pay"]
    [paid] = [s for s in after if s.name == "execute_tool pay"]
    assert (paid.attributes or {})["orchestrion.tool.resumed"] is True
    assert {s.context.trace_id for s in after} == {first_root.context.trace_id}


async def test_a_member_that_only_replays_has_no_span(traces: Traces, store: Store) -> None:
    from orchestrion import Sequential

    crash = Counter[str]()

    def second(request: ModelRequest) -> str:
        crash["second"] += 1
        if crash["second"] == 1:
            raise Crash("died in the second agent")
        return "two"

    pipeline = Sequential(
        name="pipe",
        members=[
            Agent(name="one", model=FunctionModel(lambda r: "one")),
            Agent(name="two", model=FunctionModel(second)),
        ],
    )
    first = traces.runtime(store)
    with pytest.raises(Crash):
        await first.run(pipeline, "go", run_id="p1")
    assert {s.name for s in traces.spans} >= {"invoke_agent one", "invoke_agent two"}
    traces.exporter.clear()
    await traces.runtime(store).resume("p1", runnable=pipeline)
    assert sorted(s.name for s in traces.spans) == [
        "chat function",
        "invoke_agent two",
        "invoke_workflow pipe",
    ]


async def test_a_run_started_inside_a_span_hangs_under_it(traces: Traces) -> None:
    tracer = traces.provider.get_tracer("app")
    agent = Agent(name="a", model=FunctionModel(lambda r: "hi"))
    async with traces.runtime("memory://") as runtime:
        with tracer.start_as_current_span("request") as outer:
            result = await runtime.run(agent, "go")
        record = await runtime.get(result.run_id)
    root = traces.one("invoke_agent a")
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id
    context = outer.get_span_context()
    assert record.trace is not None
    assert record.trace.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


async def test_a_tools_own_spans_are_children_of_its_call(traces: Traces) -> None:
    @tool
    def fetch(url: str) -> str:
        """Fetches (a span of its own, as an HTTP client's instrumentation makes)."""
        with trace.get_tracer("http", tracer_provider=traces.provider).start_as_current_span("GET"):
            return "page"

    agent = Agent(name="a", model=TestModel(), tools=[fetch])
    async with traces.runtime("memory://") as runtime:
        await runtime.run(agent, "go")
    assert traces.parent(traces.one("GET")) is traces.one("execute_tool fetch")


async def test_retries_and_fallbacks_are_events_on_the_chat_span(traces: Traces) -> None:
    primary = FaultyModel(
        FunctionModel(lambda r: "never", name="primary"),
        Faults.script([ServerError(503), ServerError(503), ServerError(503)]),
    )
    backup = FunctionModel(lambda r: "from backup", name="backup")
    policy = Policy(retry=Retry(attempts=2, initial=0.001, jitter=0), fallback=[backup])
    async with traces.runtime("memory://") as runtime:
        result = await runtime.run(Agent(name="a", model=primary, policy=policy), "go")
    assert result.output == "from backup"
    [chat] = [s for s in traces.spans if s.name.startswith("chat ")]
    assert chat.name == "chat backup"
    attributes = chat.attributes or {}
    assert attributes["gen_ai.request.model"] == "backup"
    assert attributes["orchestrion.fallback_from"] == "test:primary"
    assert [e.name for e in chat.events] == ["orchestrion.retry", "orchestrion.fallback"]
    retry, fallback = chat.events
    assert (retry.attributes or {})["orchestrion.attempt"] == 1
    assert (fallback.attributes or {})["orchestrion.used"] == "test:backup"


async def test_an_interrupt_is_an_event_and_the_answer_resumes_in_the_same_trace(
    traces: Traces,
) -> None:
    agent = approving_agent()
    async with traces.runtime("memory://") as runtime:
        waiting = await runtime.run(agent, "go")
        [interrupt] = waiting.interrupts
        [first] = traces.named("invoke_agent a")
        assert (first.attributes or {})["orchestrion.run.status"] == "interrupted"
        [event] = first.events
        assert event.name == "orchestrion.interrupt"
        assert (event.attributes or {})["orchestrion.interrupt.id"] == interrupt.id
        assert first.status.status_code is StatusCode.UNSET  # waiting is no failure
        await runtime.resume(waiting.run_id, {interrupt.id: Approve()})
    second = [s for s in traces.named("invoke_agent a") if s is not first]
    assert [traces.parent(s) for s in second] == [first]
    assert [s.name for s in traces.children(second[0])] == [
        "execute_tool transfer",
        "chat scripted",
    ]


async def test_a_failed_run_and_a_failed_tool_are_errors(traces: Traces) -> None:
    @tool
    def broken(x: int) -> str:
        """Breaks."""
        raise RuntimeError("disk full")

    agent = Agent(name="a", model=TestModel(), tools=[broken])
    async with traces.runtime("memory://") as runtime:
        result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    [span] = traces.named("execute_tool broken")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ToolError"
    root = traces.one("invoke_agent a")
    assert root.status.status_code is StatusCode.ERROR
    assert (root.attributes or {})["orchestrion.run.status"] == "failed"


async def test_calls_answered_with_an_error_without_running_are_tool_spans_too(
    traces: Traces,
) -> None:
    @tool(effect="write", approval=True)
    def pay(amount: float) -> str:
        """Pay."""
        return "paid"

    script = ScriptedModel(
        [
            call("nope", {}, id="c1"),
            call("pay", {"amount": "lots"}, id="c2"),
            call("pay", {"amount": 5}, id="c3"),
            "gave up",
        ]
    )
    agent = Agent(name="a", model=script, tools=[pay])
    async with traces.runtime("memory://") as runtime:
        waiting = await runtime.run(agent, "go", run_id="r")
        [asked] = waiting.interrupts
        spans_before = len(traces.spans)
        done = await runtime.resume("r", {asked.id: Reject("too much")})
    assert done.status is RunStatus.COMPLETED

    refused = {
        s.name + " " + str((s.attributes or {}).get("gen_ai.tool.call.id")): (
            (s.attributes or {})["error.type"],
            s.status.status_code,
            traces.parent(s).name,  # type: ignore[union-attr]
        )
        for s in traces.spans
        if s.name.startswith("execute_tool")
    }
    assert refused == {
        "execute_tool nope c1": ("unknown_tool", StatusCode.ERROR, "invoke_agent a"),
        "execute_tool pay c2": ("invalid_arguments", StatusCode.ERROR, "invoke_agent a"),
        "execute_tool pay c3": ("rejected", StatusCode.ERROR, "invoke_agent a"),
    }
    # the resume reports the rejection once, and not the two refusals it replayed
    resumed = [s for s in traces.spans[spans_before:] if s.name.startswith("execute_tool")]
    assert [s.name for s in resumed] == ["execute_tool pay"]


async def test_a_submitted_run_takes_the_traceparent_it_was_given(store: Store) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    runtime = Runtime(store)  # not traced: a traceparent given is kept all the same
    run_id = await runtime.submit("tests.workers.target:agent", "x", traceparent=parent)
    assert (await runtime.get(run_id)).trace == parent
    with pytest.raises(UserError, match="not a W3C trace context"):
        await runtime.submit("tests.workers.target:agent", "x", traceparent="00-zz-01")


async def test_a_runs_trace_once_set_stays(store: Store) -> None:
    runtime = Runtime(store)
    result = await runtime.run(Agent(name="a", model=FunctionModel(lambda r: "ok")), "go")
    first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    second = "00-11111111111111111111111111111111-2222222222222222-01"
    await store.update_run(result.run_id, status=RunStatus.COMPLETED, trace=first)
    await store.update_run(result.run_id, status=RunStatus.COMPLETED, trace=second)
    await store.update_run(result.run_id, status=RunStatus.COMPLETED)
    assert (await runtime.get(result.run_id)).trace == first


def test_untraced_runs_do_not_import_opentelemetry() -> None:
    code = (
        "import asyncio, sys\n"
        "from orchestrion import Agent, Runtime\n"
        "from orchestrion.testing import FunctionModel\n"
        "agent = Agent(name='a', model=FunctionModel(lambda r: 'ok'))\n"
        "async def main():\n"
        "    async with Runtime('memory://') as rt:\n"
        "        assert (await rt.run(agent, 'go')).output == 'ok'\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


async def test_a_group_chat_is_its_speakers_turns_under_it(traces: Traces) -> None:
    from orchestrion import GroupChat, MaxTurns

    chat = GroupChat(
        name="review",
        participants=[
            Agent(name="writer", model=ScriptedModel(["draft 1", "draft 2"])),
            Agent(name="critic", model=ScriptedModel(["too long"])),
        ],
        termination=MaxTurns(3),
    )
    async with traces.runtime("memory://") as runtime:
        await runtime.run(chat, "write a tagline")
    root = _check_tree(traces)
    assert root.name == "invoke_workflow review"
    assert (root.attributes or {})["orchestrion.pattern"] == "GroupChat"
    turns = sorted(
        (s for s in traces.children(root) if s.name.startswith("invoke_agent")),
        key=lambda s: s.start_time or 0,
    )
    assert [s.name for s in turns] == [
        "invoke_agent writer",
        "invoke_agent critic",
        "invoke_agent writer",
    ]
    assert all([c.name for c in traces.children(s)] == ["chat scripted"] for s in turns)


async def test_a_resume_reports_no_handoff_and_no_member_it_only_replayed(
    traces: Traces,
) -> None:
    module = importlib.import_module(DEMOS["support-triage"])
    async with traces.runtime("memory://") as runtime:
        result = await run_approving(runtime, module.agent, module.TASK)
        history = await runtime.history(result.run_id)
    executions = [s for s in traces.spans if (s.attributes or {}).get("orchestrion.run.id")]
    assert len(executions) >= 2  # it waited for an approval, and was resumed
    agents = Counter(s.name for s in traces.spans if s.name.startswith("invoke_agent"))
    handoffs = [e for s in traces.spans for e in s.events if e.name == "orchestrion.handoff"]
    assert agents["invoke_agent triage"] == 1  # replayed in the resume: no second span
    answering = {keys.parse(s.key).agent for s in history if s.kind == "model"}
    assert len(answering) >= 2
    assert len(handoffs) == len(answering) - 1  # each hand-off once, as it happened


class FailingResumes(MemoryStore):
    """A store whose status writes fail while `failing` is set."""

    failing = False

    async def update_run(self, run_id: str, **kw: Any) -> None:
        if self.failing:
            raise StoreError("the database went away")
        await super().update_run(run_id, **kw)


async def test_an_execution_that_cannot_start_still_ends_its_span(traces: Traces) -> None:
    agent = approving_agent()
    store = FailingResumes()
    async with traces.runtime(store) as runtime:
        waiting = await runtime.run(agent, "go")
        store.failing = True
        with pytest.raises(StoreError):
            await runtime.resume(waiting.run_id, {waiting.interrupts[0].id: Approve()})
    _, second = sorted(traces.named("invoke_agent a"), key=lambda s: s.start_time or 0)
    assert second.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["error.type"] == "StoreError"
