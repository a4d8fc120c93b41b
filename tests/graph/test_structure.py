"""`structure`: a team's graph before it runs, for every pattern and their nesting."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrion import (
    Agent,
    Concurrent,
    GroupChat,
    Handoff,
    PeerNetwork,
    Policy,
    RunContext,
    Sequential,
    Supervisor,
    UserError,
    tool,
    workflow,
)
from orchestrion.graph import Graph, structure
from orchestrion.graph.structure import INPUT, OUTPUT
from orchestrion.patterns import Link, Shape
from orchestrion.testing import ScriptedModel


def agent(name: str, **kw: Any) -> Agent:
    return Agent(name=name, model=ScriptedModel(["ok"]), **kw)


def edges(graph: Graph) -> set[tuple[str, str, str]]:
    return set(graph.edges)


@tool(effect="write", approval=True)
def pay(amount: float) -> str:
    """Pay."""
    return "paid"


@tool
def balance() -> float:
    """The balance."""
    return 1.0


def test_a_hierarchy_of_supervisors_nests_its_clusters_and_delegations() -> None:
    search, code = agent("search", tools=[balance]), agent("code")
    inner = Supervisor(name="investigation", manager=agent("coordinator"), workers=[search, code])
    team = Supervisor(name="research", manager=agent("lead"), workers=[inner, agent("skeptic")])

    graph = structure(team)

    assert {c.id: (c.label, c.parent) for c in graph.clusters.values()} == {
        "research": ("Supervisor research", None),
        "research:investigation": ("Supervisor investigation", "research"),
    }
    lead, coordinator = "research:lead", "research:investigation:coordinator"
    assert edges(graph) == {
        (INPUT, lead, "input"),
        (lead, coordinator, "delegates"),  # a worker pattern is entered at its manager
        (lead, "research:skeptic", "delegates"),
        (coordinator, "research:investigation:search", "delegates"),
        (coordinator, "research:investigation:code", "delegates"),
        ("research:investigation:search", "research:investigation:search:tool:balance", "calls"),
        (lead, OUTPUT, "output"),
    }
    assert graph.nodes[coordinator].cluster == "research:investigation"
    assert graph.nodes[lead].detail == "test:scripted"
    # delegation tools are edges, not tool nodes
    assert not [n for n in graph.nodes.values() if n.label.startswith("delegate_to_")]


def test_a_pipeline_flows_from_every_branch_of_a_member_fan_out_to_the_next_member() -> None:
    fan = Concurrent(name="checks", branches=[agent("a"), agent("b")])
    team = Sequential(name="pipe", members=[agent("intake"), fan, agent("report")])

    graph = structure(team)

    a, b = "pipe:checks:a", "pipe:checks:b"
    assert edges(graph) == {
        (INPUT, "pipe:intake", "input"),
        ("pipe:intake", a, "next"),
        ("pipe:intake", b, "next"),
        (a, "pipe:report", "next"),
        (b, "pipe:report", "next"),
        ("pipe:report", OUTPUT, "output"),
    }


def test_a_fan_out_at_the_top_says_so_and_its_aggregator_takes_every_branch() -> None:
    with_agent = Concurrent(
        name="c", branches=[agent("a"), agent("b")], aggregator=agent("summary")
    )
    with_function = Concurrent(name="c", branches=[agent("a")], aggregator=lambda results: 1)

    assert edges(structure(with_agent)) == {
        (INPUT, "c:a", "fans out"),
        (INPUT, "c:b", "fans out"),
        ("c:a", "c:summary", "aggregates"),
        ("c:b", "c:summary", "aggregates"),
        ("c:summary", OUTPUT, "output"),
    }
    assert edges(structure(with_function)) == {
        (INPUT, "c:a", "fans out"),
        ("c:a", OUTPUT, "aggregates"),
    }


def test_a_handoff_draws_its_routes_and_every_agent_may_answer() -> None:
    desk = Handoff(
        name="desk",
        agents=[agent("triage"), agent("billing", tools=[pay]), agent("tech")],
        routes={"triage": ["billing", "tech"], "billing": ["tech"]},
    )

    graph = structure(desk)

    assert {e for e in edges(graph) if e[2] == "hands off"} == {
        ("desk:triage", "desk:billing", "hands off"),
        ("desk:triage", "desk:tech", "hands off"),
        ("desk:billing", "desk:tech", "hands off"),
    }
    assert (INPUT, "desk:triage", "input") in edges(graph)
    assert {e[0] for e in edges(graph) if e[1] == OUTPUT} == {
        "desk:triage",
        "desk:billing",
        "desk:tech",
    }
    assert graph.nodes["desk:billing:tool:pay"].detail == "write, approval"
    assert not [n for n in graph.nodes.values() if n.label.startswith("transfer_to_")]


def test_a_peer_network_draws_who_may_message_whom() -> None:
    network = PeerNetwork(
        name="payroll",
        agents=[agent("welcome"), agent("it"), agent("finance")],
        edges={"welcome": ["it", "finance"], "it": ["finance"]},
    )

    graph = structure(network)

    assert {e for e in edges(graph) if e[2] == "messages"} == {
        ("payroll:welcome", "payroll:it", "messages"),
        ("payroll:welcome", "payroll:finance", "messages"),
        ("payroll:it", "payroll:finance", "messages"),
    }
    assert (INPUT, "payroll:welcome", "input") in edges(graph)
    assert not [n for n in graph.nodes.values() if n.kind == "tool"]  # mail is an edge


@pytest.mark.parametrize(
    ("speaker", "expected"),
    [
        (
            "round_robin",
            {
                (INPUT, "chat:x", "input"),
                ("chat:x", "chat:y", "speaks after"),
                ("chat:y", "chat:x", "speaks after"),
            },
        ),
        (
            "selector",
            {
                (INPUT, "chat:host", "input"),
                ("chat:host", "chat:x", "selects"),
                ("chat:host", "chat:y", "selects"),
                ("chat:x", "chat:host", "speaks after"),  # it reads each turn, picks again
                ("chat:y", "chat:host", "speaks after"),
            },
        ),
        (
            "function",
            {
                (INPUT, "chat:x", "input"),
                (INPUT, "chat:y", "input"),
                ("chat:x", "chat:y", "speaks after"),
                ("chat:y", "chat:x", "speaks after"),
            },
        ),
    ],
)
def test_a_group_chat_draws_how_its_speakers_are_chosen(
    speaker: str, expected: set[tuple[str, str, str]]
) -> None:
    policy: Any = {
        "round_robin": "round_robin",
        "selector": agent("host"),
        "function": lambda state, names: names[0],
    }[speaker]
    chat = GroupChat(name="chat", participants=[agent("x"), agent("y")], speaker=policy)

    graph = structure(chat)

    flowing = {e for e in edges(graph) if e[1] != OUTPUT}
    assert flowing == expected
    assert {e[0] for e in edges(graph) if e[1] == OUTPUT} == {"chat:x", "chat:y"}


def test_an_agent_s_fallback_chain_and_models_are_drawn_in_the_order_they_take_over() -> None:
    backup = agent("backup", tools=[balance], policy=Policy(fallback=[agent("deep")]))
    primary = agent(
        "primary", policy=Policy(fallback=["openai:gpt-4.1-mini", backup, agent("last")])
    )

    graph = structure(primary)

    assert graph.nodes["primary"].detail == "test:scripted / openai:gpt-4.1-mini"
    fallback = "primary:fallback:"
    assert edges(graph) == {
        (INPUT, "primary", "input"),
        ("primary", f"{fallback}backup", "falls back"),
        (f"{fallback}backup", f"{fallback}deep", "falls back"),  # a fallback's own first
        (f"{fallback}deep", f"{fallback}last", "falls back"),
        (f"{fallback}backup", f"{fallback}backup:tool:balance", "calls"),
        ("primary", OUTPUT, "output"),
        (f"{fallback}backup", OUTPUT, "output"),
        (f"{fallback}deep", OUTPUT, "output"),
        (f"{fallback}last", OUTPUT, "output"),
    }


def test_a_function_workflow_is_one_box_and_a_shaped_one_draws_its_members() -> None:
    @workflow
    async def custom(ctx: RunContext[Any], input: Any) -> str:
        return "done"

    class Pair:
        """A workflow of one's own that says how it is put together."""

        name = "pair"

        def __init__(self) -> None:
            self.first, self.second = agent("first"), agent("second")

        async def invoke(self, ctx: RunContext[Any], input: Any) -> Any:
            return await ctx.run(self.second, await ctx.run(self.first, input))

        def shape(self) -> Shape:
            links = (Link(None, 0, "input"), Link(0, 1, "next"), Link(1, None, "output"))
            return Shape((self.first, self.second), links)

    team = Sequential(name="outer", members=[custom, Pair()])

    graph = structure(team)

    assert graph.nodes["outer:custom"].kind == "workflow"
    assert graph.clusters["outer:pair"].label == "Pair pair"
    assert edges(graph) == {
        (INPUT, "outer:custom", "input"),
        ("outer:custom", "outer:pair:first", "next"),
        ("outer:pair:first", "outer:pair:second", "next"),
        ("outer:pair:second", OUTPUT, "output"),
    }


def test_an_agent_with_a_typed_output_names_it() -> None:
    from pydantic import BaseModel

    class Plan(BaseModel):
        steps: list[str]

    graph = structure(agent("planner", output_type=Plan))

    assert graph.nodes["planner"].detail == "test:scripted → Plan"


class Drawn:
    """A workflow of one's own whose `shape()` is whatever the test gives it."""

    name = "drawn"

    def __init__(self, shape: Any) -> None:
        self.drawn = shape

    async def invoke(self, ctx: RunContext[Any], input: Any) -> Any:
        return input

    def shape(self) -> Any:
        return self.drawn


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            Shape((agent("a"),), (Link(None, 1, "input"),)),
            "Drawn drawn: shape() has Link(source=None, target=1, kind='input'), but its "
            "members are numbered 0 to 0",
        ),
        ({"members": []}, "Drawn drawn: shape() gave {'members': []}, not a Shape"),
    ],
)
def test_a_shape_of_one_s_own_that_links_no_member_is_a_clear_error(
    shape: Any, message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        structure(Drawn(shape))


def test_a_workflow_that_holds_itself_is_a_clear_error() -> None:
    looping = Drawn(None)
    looping.drawn = Shape((looping,), (Link(None, 0, "input"),))

    with pytest.raises(UserError, match=r"Drawn drawn holds itself \(through 'drawn:drawn'\)"):
        structure(looping)
