"""`Handoff`: support triage passing control between agents."""

from __future__ import annotations

import pytest

from orchestrion import (
    Agent,
    Approve,
    Handoff,
    LoopGuardTriggered,
    RunStatus,
    Runtime,
    Transferred,
    UserError,
    tool,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ModelResponse, ToolResult, UserMessage
from orchestrion.patterns import MaxHandoffsExceeded, text_only
from orchestrion.testing import FunctionModel, ScriptedModel, call


def triage_model() -> ScriptedModel:
    return ScriptedModel([call("transfer_to_billing", {"reason": "a refund"}, id="t1")])


async def test_triage_hands_the_conversation_to_billing(runtime: Runtime) -> None:
    billing_model = ScriptedModel(["Refund issued for order 42."])
    desk = Handoff(
        name="support",
        agents=[
            Agent(name="triage", model=triage_model()),
            Agent(name="billing", model=billing_model),
            Agent(name="technical", model=ScriptedModel([])),
        ],
    )
    result = await runtime.run(desk, "Refund my order 42")
    assert result.output == "Refund issued for order 42."
    [request] = billing_model.requests
    first = request.messages[0]
    assert isinstance(first, UserMessage) and first.content == "Refund my order 42"
    assert isinstance(request.messages[-1], ToolResult)
    assert request.messages[-1].content == "Transferred to billing."
    assert {t.name for t in request.tools} == {"transfer_to_triage", "transfer_to_technical"}
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert keys == ["support/hop-0/triage/turn-1/model", "support/hop-1/billing/turn-1/model"]


async def test_routes_limit_who_can_transfer_to_whom(runtime: Runtime) -> None:
    triage = ScriptedModel(["I can answer that myself."])
    desk = Handoff(
        name="d",
        agents=[Agent(name="triage", model=triage), Agent(name="billing", model=ScriptedModel([]))],
        routes={"triage": ["billing"], "billing": []},
    )
    await runtime.run(desk, "hi")
    assert [t.name for t in triage.requests[0].tools] == ["transfer_to_billing"]


async def test_an_unknown_transfer_is_an_unknown_tool_for_the_model(runtime: Runtime) -> None:
    triage = ScriptedModel([call("transfer_to_sales", {}), "sorry, answering myself"])
    desk = Handoff(
        name="d",
        agents=[Agent(name="triage", model=triage), Agent(name="billing", model=ScriptedModel([]))],
        routes={"triage": ["billing"]},
    )
    result = await runtime.run(desk, "hi")
    assert result.output == "sorry, answering myself"
    reply = triage.requests[1].messages[-1]
    assert (
        isinstance(reply, ToolResult) and reply.is_error and "transfer_to_billing" in reply.content
    )


async def test_text_only_filter_hides_tool_traffic_from_the_next_agent(runtime: Runtime) -> None:
    @tool
    def lookup(order: int) -> str:
        return "order 42: paid"

    triage = ScriptedModel(
        [call("lookup", {"order": 42}), call("transfer_to_billing", {"reason": "refund"})]
    )
    billing = ScriptedModel(["done"])
    desk = Handoff(
        name="d",
        agents=[
            Agent(name="triage", model=triage, tools=[lookup]),
            Agent(name="billing", model=billing),
        ],
        input_filter=text_only,
    )
    await runtime.run(desk, "refund 42")
    assert billing.requests[0].messages == (UserMessage("refund 42"),)


async def test_endless_transfers_stop_at_max_handoffs(runtime: Runtime) -> None:
    def ping(target: str) -> FunctionModel:
        return FunctionModel(lambda r: call(f"transfer_to_{target}", {}))

    desk = Handoff(
        name="d",
        agents=[Agent(name="a", model=ping("b")), Agent(name="b", model=ping("a"))],
        max_handoffs=3,
    )
    result = await runtime.run(desk, "x")
    assert result.status is RunStatus.FAILED
    assert result.error["type"] == MaxHandoffsExceeded.__name__
    assert "max_handoffs=3" in result.error["message"]


async def test_an_approval_in_the_second_agent_resumes_in_place(runtime: Runtime) -> None:
    refunds: list[int] = []

    @tool(effect="write", approval=True)
    def refund(order: int) -> str:
        refunds.append(order)
        return f"refunded {order}"

    triage = triage_model()

    def billing_policy(request: ModelRequest) -> object:
        if not any(isinstance(m, ToolResult) and m.name == "refund" for m in request.messages):
            return call("refund", {"order": 42}, id="r1")
        return "Refunded."

    desk = Handoff(
        name="support",
        agents=[
            Agent(name="triage", model=triage),
            Agent(name="billing", model=FunctionModel(billing_policy), tools=[refund]),
        ],
    )
    first = await runtime.run(desk, "refund 42")
    assert first.status is RunStatus.INTERRUPTED
    done = await runtime.resume(first.run_id, {first.interrupts[0].id: Approve()})
    assert done.output == "Refunded."
    assert refunds == [42]
    assert len(triage.requests) == 1, "triage was not asked again on resume"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": []}, "needs agents with distinct names"),
        ({"agents": ["a", "a"]}, "needs agents with distinct names"),
        ({"agents": ["a", "b"], "start": "c"}, "start 'c' is not one of"),
        ({"agents": ["a", "b"], "routes": {"a": ["zed"]}}, "names unknown agents"),
    ],
)
def test_bad_handoffs_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    agents = [Agent(name=n, model=ScriptedModel([])) for n in kwargs.pop("agents")]  # type: ignore[attr-defined]
    with pytest.raises(UserError, match=message):
        Handoff(name="d", agents=agents, **kwargs)  # type: ignore[arg-type]


def test_model_responses_keep_only_text_in_text_only() -> None:
    messages = (
        UserMessage("hi"),
        ModelResponse(text="hello", tool_calls=()),
        ToolResult("c", "t", "x"),
    )
    assert text_only(messages) == (UserMessage("hi"), ModelResponse(text="hello"))


def bouncing(target: str) -> FunctionModel:
    """Transfers to `target` unless told it is looping; then answers."""

    def decide(request: ModelRequest) -> object:
        last = request.messages[-1]
        if isinstance(last, UserMessage) and last.content.startswith("[loop guard]"):
            return f"answered after: {last.content[:60]}"
        return call(f"transfer_to_{target}", {})

    return FunctionModel(decide)


async def test_a_bounce_between_two_agents_is_warned_about(store: Store) -> None:
    events: list[object] = []
    desk = Handoff(
        name="d",
        agents=[Agent(name="a", model=bouncing("b")), Agent(name="b", model=bouncing("a"))],
        max_handoffs=10,
    )
    result = await Runtime(store, sinks=[events.append]).run(desk, "x")
    assert result.output.startswith(
        "answered after: [loop guard] This conversation has bounced between a and b"
    )
    hops = [(e.key, e.source, e.target) for e in events if isinstance(e, Transferred)]
    assert hops == [
        ("d/hop-0/a/turn-1", "a", "b"),
        ("d/hop-1/b/turn-1", "b", "a"),
        ("d/hop-2/a/turn-1", "a", "b"),  # a -> b -> a -> b: b is warned, and answers
    ]
    [loop] = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert (loop.kind, loop.subject, loop.times, loop.action) == ("handoff", "a <-> b", 2, "warn")


async def test_a_bounce_can_stop_the_run_or_ask_a_human(runtime: Runtime) -> None:
    from orchestrion import LoopGuard

    agents = [Agent(name="a", model=bouncing("b")), Agent(name="b", model=bouncing("a"))]
    stopped = await runtime.run(
        Handoff(name="d", agents=agents, loop_guard=LoopGuard(repeats=2, policy="stop")), "x"
    )
    assert stopped.error is not None and stopped.error["type"] == "LoopDetected"
    assert "a -> b -> a -> b" in stopped.error["message"]

    asking = Handoff(name="d2", agents=agents, loop_guard=LoopGuard(repeats=2, policy="ask"))
    first = await runtime.run(asking, "x")
    assert first.status is RunStatus.INTERRUPTED
    assert first.interrupts[0].payload["bouncing"] == ["a", "b"]
    done = await runtime.resume(first.run_id, {first.interrupts[0].id: "continue"})
    assert done.status is RunStatus.COMPLETED


async def test_a_crash_after_the_handoff_resumes_with_the_new_agent(runtime: Runtime) -> None:
    import asyncio

    asked: list[str] = []
    crash = {"on": True}

    def triage(request: ModelRequest) -> object:
        asked.append("triage")
        return call("transfer_to_billing", {"reason": "a refund"}, id="t1")

    def billing(request: ModelRequest) -> str:
        asked.append("billing")
        if crash["on"]:
            crash["on"] = False
            raise asyncio.CancelledError  # the process dies while billing thinks
        return "Refund issued."

    desk = Handoff(
        name="support",
        agents=[
            Agent(name="triage", model=FunctionModel(triage)),
            Agent(name="billing", model=FunctionModel(billing)),
        ],
    )
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(desk, "Refund my order 42", run_id="h1")
    done = await Runtime(runtime.store).resume("h1", runnable=desk)
    assert done.output == "Refund issued."
    assert asked == ["triage", "billing", "billing"], "triage is not asked again"
