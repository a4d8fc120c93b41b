"""`PeerNetwork`: payroll help between welcome, IT and finance, with no coordinator."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from orchestrion import (
    Agent,
    LoopGuard,
    LoopGuardTriggered,
    PeerNetwork,
    RunStatus,
    Runtime,
    UserError,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.patterns import RoundsExceeded
from orchestrion.testing import FunctionModel, ScriptedModel, call


def inbox(request: ModelRequest) -> str:
    first = request.messages[0]
    assert isinstance(first, UserMessage)
    return first.content


def answered(request: ModelRequest) -> bool:
    return any(isinstance(m, ToolResult) for m in request.messages)


def payroll(crash: dict[str, bool] | None = None, log: list[str] | None = None) -> PeerNetwork:
    log = [] if log is None else log

    def welcome(request: ModelRequest) -> object:
        log.append("welcome")
        if answered(request):
            return "routed"
        return [
            call("send_message", {"to": "it", "content": "reset payroll portal password"}, id="w1"),
            call("send_message", {"to": "finance", "content": "why is my pay short?"}, id="w2"),
        ]

    def it(request: ModelRequest) -> object:
        log.append("it")
        if answered(request):
            return "done"
        return call(
            "send_message", {"to": "finance", "content": "IT: password reset done"}, id="i1"
        )

    def finance(request: ModelRequest) -> object:
        log.append("finance")
        if crash and crash.get("on") and "IT:" in inbox(request):
            crash["on"] = False
            raise asyncio.CancelledError  # the process dies in round 3
        if answered(request):
            return "ok"
        if "IT:" in inbox(request):
            return call("finish", {"answer": "Pay fixed; portal access restored."}, id="f2")
        return "noted, waiting for IT"

    return PeerNetwork(
        name="payroll",
        agents=[
            Agent(name="welcome", model=FunctionModel(welcome)),
            Agent(name="it", model=FunctionModel(it)),
            Agent(name="finance", model=FunctionModel(finance)),
        ],
        edges={"welcome": ["it", "finance"], "it": ["finance"], "finance": []},
    )


async def test_peers_message_each_other_until_one_finishes(runtime: Runtime) -> None:
    log: list[str] = []
    result = await runtime.run(payroll(log=log), "My pay is short and I can't log in")
    assert result.output == "Pay fixed; portal access restored."
    keys = [s.key for s in await runtime.history(result.run_id) if s.kind == "model"]
    assert (
        "payroll/round-2/finance/turn-1/model" in keys and "payroll/round-2/it/turn-1/model" in keys
    )
    assert "payroll/round-3/finance/turn-1/model" in keys


async def test_an_agent_without_edges_has_no_send_tool_and_the_run_ends_when_mail_runs_out(
    runtime: Runtime,
) -> None:
    model = ScriptedModel([call("send_message", {"to": "welcome", "content": "hi"}), "ok"])
    net = PeerNetwork(
        name="n",
        agents=[Agent(name="finance", model=model), Agent(name="welcome", model=ScriptedModel([]))],
        edges={"finance": [], "welcome": []},
    )
    result = await runtime.run(net, "x")
    assert result.output == {
        "messages": [{"from": "user", "to": "finance", "content": "x"}],
        "finished": None,
    }
    assert [t.name for t in model.requests[0].tools] == ["finish"]


async def test_a_message_outside_the_edges_is_refused_to_the_model(runtime: Runtime) -> None:
    model = ScriptedModel([call("send_message", {"to": "ceo", "content": "hi"}), "fine"])
    net = PeerNetwork(
        name="n",
        agents=[
            Agent(name="a", model=model),
            Agent(name="b", model=ScriptedModel([])),
            Agent(name="ceo", model=ScriptedModel([])),
        ],
        edges={"a": ["b"]},
    )
    await runtime.run(net, "x")
    reply = model.requests[1].messages[-1]
    assert (
        isinstance(reply, ToolResult)
        and reply.is_error
        and "you can message: ['b']" in reply.content
    )


async def test_endless_chatter_stops_at_max_rounds(runtime: Runtime) -> None:
    def ping(to: str) -> FunctionModel:
        return FunctionModel(
            lambda r: "ok" if answered(r) else call("send_message", {"to": to, "content": "ping"})
        )

    net = PeerNetwork(
        name="n",
        agents=[Agent(name="a", model=ping("b")), Agent(name="b", model=ping("a"))],
        max_rounds=4,
    )
    result = await runtime.run(net, "x")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == RoundsExceeded.__name__


async def test_a_crash_mid_round_resumes_with_the_same_mail(runtime: Runtime) -> None:
    crash = {"on": True}
    log: list[str] = []
    net = payroll(crash, log)
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(net, "help", run_id="p1")
    asked_before = list(log)
    done = await Runtime(runtime.store).resume("p1", runnable=net)
    assert done.output == "Pay fixed; portal access restored."
    # On resume only finance's interrupted activation asks its model again.
    assert log[len(asked_before) :] == ["finance", "finance"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": []}, "needs agents with distinct names"),
        ({"agents": ["a"], "entry": "b"}, r"unknown agents \['b'\]"),
        ({"agents": ["a"], "edges": {"a": ["z"]}}, r"unknown agents \['z'\]"),
    ],
)
def test_bad_networks_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    agents = [Agent(name=n, model=ScriptedModel([])) for n in kwargs.pop("agents")]  # type: ignore[attr-defined]
    with pytest.raises(UserError, match=message):
        PeerNetwork(name="n", agents=agents, **kwargs)  # type: ignore[arg-type]


def ping_pong(guard: LoopGuard | None) -> tuple[PeerNetwork, list[str]]:
    """Two agents answer every message with the same question, until told they loop."""
    inboxes: list[str] = []

    def asker(to: str) -> FunctionModel:
        def speak(request: ModelRequest) -> object:
            inboxes.append(inbox(request))
            if answered(request):
                return "sent"
            if "[loop guard]" in inbox(request):
                return call("finish", {"answer": f"stuck; {to} never had the figures"}, id="f")
            return call("send_message", {"to": to, "content": "do you have the figures?"}, id="s")

        return FunctionModel(speak)

    net = PeerNetwork(
        name="net",
        agents=[Agent(name="a", model=asker("b")), Agent(name="b", model=asker("a"))],
        max_rounds=8,
        loop_guard=guard,
    )
    return net, inboxes


async def test_rounds_that_repeat_earlier_mail_are_warned_about(store: Store) -> None:
    events: list[object] = []
    net, inboxes = ping_pong(LoopGuard(repeats=2))
    result = await Runtime(store, sinks=[events.append]).run(net, "start")
    # round 1: user -> a; 2: a -> b; 3: b -> a; 4: a -> b again (round 2's mail) -> warned
    assert result.output == "stuck; a never had the figures"
    [warned] = {i for i in inboxes if "[loop guard]" in i}  # b's inbox in round 4
    assert warned.startswith("Message from a:\ndo you have the figures?\n\n[loop guard]")
    assert "repeat rounds 2, 4 word for word" in warned
    [loop] = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert (loop.kind, loop.subject, loop.times, loop.action) == ("no_progress", "net", 2, "warn")


async def test_rounds_without_progress_can_stop_the_run(runtime: Runtime) -> None:
    net, _ = ping_pong(LoopGuard(repeats=2, policy="stop"))
    result = await runtime.run(net, "start")
    assert result.status is RunStatus.STOPPED
    assert (
        result.error is not None
        and "rounds 2, 4 carried exactly the same" in result.error["message"]
    )


async def test_without_a_guard_only_max_rounds_ends_the_loop(runtime: Runtime) -> None:
    net, _ = ping_pong(None)
    result = await runtime.run(net, "start")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "RoundsExceeded"


async def test_the_bus_is_pluggable(runtime: Runtime) -> None:
    from orchestrion.patterns.peer_network import InProcessBus, Mail

    posted: list[Mail] = []

    class RecordingBus(InProcessBus):
        def post(self, mail: Mail) -> None:
            posted.append(mail)
            super().post(mail)

    net = payroll()
    result = await runtime.run(dataclasses.replace(net, bus=RecordingBus), "payroll question")
    assert result.output == "Pay fixed; portal access restored."
    assert [(m.sender, m.to) for m in posted] == [
        ("user", "welcome"),
        ("welcome", "it"),
        ("welcome", "finance"),
        ("it", "finance"),
    ]


async def test_peer_mail_order_does_not_depend_on_who_finishes_first(runtime: Runtime) -> None:
    inboxes: list[str] = []

    def sender(name: str, delay: float) -> Agent[str]:
        async def act(request: ModelRequest) -> object:
            if any(isinstance(m, ToolResult) for m in request.messages):
                return "sent"
            await asyncio.sleep(delay)
            return call("send_message", {"to": "c", "content": f"from {name}"}, id=f"{name}1")

        return Agent(name=name, model=FunctionModel(act))

    def collector(request: ModelRequest) -> object:
        inboxes.append(str(request.messages[0]))
        return "read"

    def network(first_delay: float) -> PeerNetwork:
        return PeerNetwork(
            name="n",
            agents=[
                Agent(
                    name="start",
                    model=FunctionModel(
                        lambda r: (
                            "ok"
                            if any(isinstance(m, ToolResult) for m in r.messages)
                            else [
                                call("send_message", {"to": "a", "content": "go"}, id="s1"),
                                call("send_message", {"to": "b", "content": "go"}, id="s2"),
                            ]
                        )
                    ),
                ),
                sender("a", first_delay),
                sender("b", 0.02 - first_delay),
                Agent(name="c", model=FunctionModel(collector)),
            ],
        )

    await runtime.run(network(0.0), "x")
    await runtime.run(network(0.02), "x")
    assert inboxes[0] == inboxes[1], "the same mail order whichever sender finished first"


async def test_a_network_may_use_exactly_max_rounds(runtime: Runtime) -> None:
    net = PeerNetwork(
        name="n", agents=[Agent(name="a", model=ScriptedModel(["quiet"]))], max_rounds=1
    )
    result = await runtime.run(net, "x")
    assert result.status is RunStatus.COMPLETED
