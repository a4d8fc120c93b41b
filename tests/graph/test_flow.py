"""`flow`: what flowed in a run, read from its journal: who gave whom work, how
often, what it cost, the tools called; the same after a crash and a resume."""

from __future__ import annotations

from typing import Any

from orchestrion import (
    Agent,
    Approve,
    Concurrent,
    GroupChat,
    Handoff,
    MaxTurns,
    PeerNetwork,
    Policy,
    RunContext,
    Runtime,
    Sequential,
    Supervisor,
    tool,
    workflow,
)
from orchestrion.engine.store import Store
from orchestrion.graph import Graph, flow, mermaid
from orchestrion.graph.structure import INPUT
from orchestrion.messages import ModelResponse, ToolCall, Usage
from orchestrion.testing import FunctionModel, ScriptedModel, call


def said(text: str, tokens: int) -> ModelResponse:
    return ModelResponse(text=text, usage=Usage(tokens, 1, 1))


def asks(*calls: ToolCall, tokens: int) -> ModelResponse:
    return ModelResponse(tool_calls=calls, usage=Usage(tokens, 1, 1))


def agent(name: str, *script: Any, **kw: Any) -> Agent:
    return Agent(name=name, model=ScriptedModel(list(script)), **kw)


async def run_flow(team: Any, input: Any = "go", **kw: Any) -> Graph:
    async with Runtime("memory://") as runtime:
        result = await runtime.run(team, input, run_id="r", **kw)
        assert result.status.value == "completed", result.error
        return flow("r", await runtime.history("r"))


def counts(graph: Graph) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Each edge's count and tokens (input + output)."""
    return {
        key: (e.flowed.count, e.flowed.usage.total_tokens)
        for key, e in graph.edges.items()
        if e.flowed is not None
    }


@tool
def lookup(q: str) -> str:
    """Look up."""
    return f"found {q}"


async def test_delegations_count_each_call_and_carry_the_cost_of_everything_below() -> None:
    search = agent(
        "search",
        asks(call("lookup", {"q": "a"}, id="l1"), tokens=10),
        said("a found", 10),
        said("b found", 10),
        tools=[lookup],
    )
    inner = Supervisor(
        name="inv",
        manager=agent(
            "coord",
            asks(call("delegate_to_search", {"task": "a"}, id="s1"), tokens=20),
            said("inv done", 20),
        ),
        workers=[search],
    )
    lead = agent(
        "lead",
        asks(
            call("delegate_to_inv", {"task": "x"}, id="d1"),
            call("delegate_to_search", {"task": "b"}, id="d2"),
            tokens=30,
        ),
        said("all done", 30),
    )
    team = Supervisor(name="team", manager=lead, workers=[inner, search])

    graph = await run_flow(team)

    assert counts(graph) == {
        (INPUT, "lead", "input"): (1, 62 + 42 + 22 + 11),  # the whole run
        ("lead", "coord", "delegates"): (1, 42 + 22),  # the nested delegation included
        ("coord", "search", "delegates"): (1, 22),
        ("lead", "search", "delegates"): (1, 11),
    }
    assert ("search", "search:lookup", "calls") in graph.edges
    search_node = graph.nodes["search"].flowed
    assert search_node is not None
    assert (search_node.count, search_node.usage.requests) == (2, 3)  # its own calls only
    total = sum(n.flowed.usage.total_tokens for n in graph.nodes.values() if n.flowed)
    assert total == 62 + 42 + 33  # agents' own spending adds up to the run's
    # the patterns, read from the keys, are the clusters (a worker in two: the first)
    assert {c.id: (c.label, c.parent) for c in graph.clusters.values()} == {
        "team": ("team", None),
        "team:inv": ("inv", "team"),
    }
    where = {n.id: n.cluster for n in graph.nodes.values()}
    assert (where[INPUT], where["lead"], where["coord"]) == (None, "team", "team:inv")
    assert where["search"] in ("team", "team:inv")  # wherever it ran first
    assert where["search:lookup"] == where["search"]  # an agent's tools sit by it


async def test_handoffs_link_each_hop_to_the_agent_that_transferred() -> None:
    desk = Handoff(
        name="desk",
        agents=[
            agent("triage", asks(call("transfer_to_billing", {}, id="t1"), tokens=5)),
            agent(
                "billing",
                asks(call("transfer_to_tech", {}, id="t2"), tokens=7),
            ),
            agent("tech", said("fixed", 9)),
        ],
        loop_guard=None,
    )

    graph = await run_flow(desk)

    assert counts(graph) == {
        (INPUT, "triage", "input"): (1, 6),
        ("triage", "billing", "hands off"): (1, 8),
        ("billing", "tech", "hands off"): (1, 10),
    }


async def test_a_pipeline_passes_on_from_each_branch_of_a_fan_out_and_its_aggregator() -> None:
    checks = Concurrent(
        name="checks", branches=[agent("a", said("A", 1)), agent("b", said("B", 2))]
    )
    summed = Concurrent(
        name="summed",
        branches=[agent("c", said("C", 3)), agent("d", said("D", 4))],
        aggregator=agent("sum", said("C+D", 5)),
    )
    pipe = Sequential(
        name="pipe",
        members=[agent("intake", said("in", 0)), checks, summed, agent("out", said("done", 6))],
    )

    graph = await run_flow(pipe)

    assert counts(graph) == {
        (INPUT, "intake", "input"): (1, 1),
        ("intake", "a", "next"): (1, 2),
        ("intake", "b", "next"): (1, 3),
        # both branches pass their output on, and share the cost of what it caused
        ("a", "c", "next"): (1, 3),  # c spent 3 + 1 tokens
        ("b", "c", "next"): (1, 1),
        ("a", "d", "next"): (1, 3),  # d 4 + 1
        ("b", "d", "next"): (1, 2),
        ("c", "sum", "aggregates"): (1, 4),  # sum 5 + 1
        ("d", "sum", "aggregates"): (1, 2),
        ("sum", "out", "next"): (1, 7),  # the aggregator's output, not a branch's
    }


async def test_a_fan_out_at_the_top_comes_from_the_input() -> None:
    fan = Concurrent(name="fan", branches=[agent("a", said("A", 1)), agent("b", said("B", 2))])

    graph = await run_flow(fan)

    assert counts(graph) == {(INPUT, "a", "fans out"): (1, 2), (INPUT, "b", "fans out"): (1, 3)}


async def test_mail_between_peers_is_counted_as_sent_and_costed_where_it_is_read() -> None:
    def mail(to: str, id: str) -> ToolCall:
        return call("send_message", {"to": to, "content": "hi"}, id=id)

    network = PeerNetwork(
        name="net",
        agents=[
            agent("hub", asks(mail("x", "m1"), mail("y", "m2"), tokens=3), said("sent", 3)),
            agent("x", asks(mail("y", "m3"), tokens=5), said("ok", 5)),
            agent(
                "y",
                said("noted", 7),  # round 2: the hub's mail
                asks(call("finish", {"answer": "done"}, id="f"), tokens=9),  # round 3: x's
                said("bye", 9),
            ),
        ],
        loop_guard=None,
    )

    graph = await run_flow(network)

    assert counts(graph) == {
        (INPUT, "hub", "input"): (1, 8),
        ("hub", "x", "messages"): (1, 12),
        ("hub", "y", "messages"): (1, 8),
        ("x", "y", "messages"): (1, 20),
    }
    assert ("y", "y:finish", "calls") in graph.edges
    y = graph.nodes["y"].flowed
    assert y is not None and y.count == 2  # woken in two rounds


async def test_a_group_chat_shows_who_picked_or_followed_each_speaker() -> None:
    chat = GroupChat(
        name="chat",
        participants=[agent("x", said("x1", 1), said("x2", 1)), agent("y", said("y1", 2))],
        speaker=agent("host", said("x", 0), said("y", 0), said("x", 0)),
        termination=MaxTurns(3),
        loop_guard=None,
    )
    rounds = GroupChat(
        name="rr",
        participants=[agent("p", said("p1", 1), said("p2", 1)), agent("q", said("q1", 2))],
        termination=MaxTurns(3),
        loop_guard=None,
    )

    picked, taken = await run_flow(chat), await run_flow(rounds)

    assert counts(picked) == {
        (INPUT, "host", "input"): (1, 1),
        ("host", "x", "selects"): (2, 4),
        ("host", "y", "selects"): (1, 3),
        ("x", "host", "speaks after"): (1, 1),  # it reads the chat after each turn
        ("y", "host", "speaks after"): (1, 1),
    }
    assert counts(taken) == {
        (INPUT, "p", "input"): (1, 2),
        ("p", "q", "speaks after"): (1, 3),
        ("q", "p", "speaks after"): (1, 2),
    }


async def test_a_fallback_agent_is_reached_from_the_agent_that_failed() -> None:
    broken = Agent(name="broken", model=ScriptedModel([call("nope", {})] * 3), max_turns=1)
    team = Sequential(
        name="s",
        members=[
            Agent(
                name="primary",
                model=ScriptedModel([said("bad", 1)]),
                output_type=int,
                output_retries=0,
                policy=Policy(fallback=[agent("backup", said("4", 2)), broken]),
            )
        ],
    )

    graph = await run_flow(team)

    assert counts(graph)[("primary", "backup", "falls back")] == (1, 3)
    primary = graph.nodes["primary"].flowed
    assert primary is not None and primary.errors == 1
    assert "broken" not in graph.nodes  # the next fallback was never needed


pay_calls: list[float] = []


@tool(effect="write", approval=True)
def pay(amount: float) -> str:
    """Pay."""
    pay_calls.append(amount)
    return "paid"


async def test_a_resumed_run_counts_every_step_once(store: Store) -> None:
    team = Supervisor(
        name="bank",
        manager=agent(
            "teller",
            asks(call("delegate_to_payer", {"task": "pay 5"}, id="d"), tokens=4),
            said("paid", 4),
        ),
        workers=[
            agent(
                "payer",
                asks(call("pay", {"amount": 5}, id="p"), tokens=6),
                said("done", 6),
                said("done", 6),
                tools=[pay],
            )
        ],
    )
    async with Runtime(store) as runtime:
        waiting = await runtime.run(team, "go", run_id="b")
        [interrupt] = waiting.interrupts
        done = await runtime.resume("b", {interrupt.id: Approve()}, runnable=team)
        assert done.status.value == "completed"
        graph = flow("b", await runtime.history("b"))

    assert counts(graph) == {
        (INPUT, "teller", "input"): (1, 10 + 14),
        ("teller", "payer", "delegates"): (1, 14),
    }
    tool = graph.nodes["payer:pay"].flowed
    assert tool is not None and (tool.count, tool.errors) == (1, 0)
    payer = graph.nodes["payer"].flowed
    assert payer is not None and (payer.count, payer.usage.requests) == (1, 2)


async def test_a_tool_answered_with_an_error_is_counted_failed() -> None:
    @tool
    def fragile(x: int) -> str:
        """Breaks on bad input."""
        return str(x)

    worker = agent(
        "w",
        asks(call("fragile", {"x": "not a number"}, id="f1"), tokens=1),
        asks(call("fragile", {"x": 2}, id="f2"), tokens=1),
        said("ok", 1),
        tools=[fragile],
    )

    graph = await run_flow(worker)

    node = graph.nodes["w:fragile"].flowed
    assert node is not None and (node.count, node.errors) == (2, 1)


async def test_after_a_nested_pipeline_the_next_member_follows_its_last_agent() -> None:
    fan = Concurrent(name="fan", branches=[agent("a", said("A", 1)), agent("b", said("B", 1))])
    inner = Sequential(
        name="inner", members=[agent("x", said("X", 1)), fan, agent("y", said("Y", 1))]
    )
    outer = Sequential(name="outer", members=[inner, agent("z", said("Z", 1))])

    graph = await run_flow(outer)

    into_z = {key for key in graph.edges if key[1] == "z"}
    assert into_z == {("y", "z", "next")}  # not the fan-out's branches inside `inner`
    assert {("a", "y", "next"), ("b", "y", "next")} <= set(graph.edges)


async def test_scopes_named_like_a_fallback_or_an_aggregate_are_not_read_as_one() -> None:
    @workflow
    async def wf(ctx: RunContext[Any], input: Any) -> Any:
        first = await ctx.run(agent("primary", said("p", 1)), input)
        return await ctx.run(agent("backup", said("b", 1)), first, key="fallback")

    named = Sequential(
        name="outer",
        members=[
            agent("first", said("f", 1)),
            Sequential(name="fallback", members=[agent("inner", said("i", 1))]),
        ],
    )

    custom, nested = await run_flow(wf), await run_flow(named)

    for graph in (custom, nested):
        assert not [k for k in graph.edges if k[2] == "falls back"]
        ends = {end for key in graph.edges for end in key[:2]}
        assert ends <= set(graph.nodes)
        mermaid(graph)  # every edge's ends are drawn
    assert ("first", "inner", "next") in nested.edges


async def test_a_chain_of_fallbacks_is_drawn_as_the_journal_says_it_went() -> None:
    def invalid(name: str, **kw: Any) -> Agent:
        return Agent(
            name=name,
            model=ScriptedModel([said("not a number", 1)]),
            output_type=int,
            output_retries=0,
            **kw,
        )

    backup = invalid("backup", policy=Policy(fallback=[agent("last", said("4", 1))]))
    graph = await run_flow(
        Sequential(name="s", members=[invalid("primary", policy=Policy(fallback=[backup]))])
    )

    assert counts(graph) == {
        (INPUT, "primary", "input"): (1, 6),
        ("primary", "backup", "falls back"): (1, 2),
        ("backup", "last", "falls back"): (1, 2),  # backup gave up to last, not primary
    }
    failed = {name: graph.nodes[name].flowed.errors for name in ("primary", "backup", "last")}  # type: ignore[union-attr]
    assert failed == {"primary": 1, "backup": 1, "last": 0}  # once per run that failed


async def test_a_selector_chat_inside_a_pipeline_is_entered_once() -> None:
    chat = GroupChat(
        name="chat",
        participants=[agent("x", said("x1", 1))],
        speaker=agent("host", said("x", 0)),
        termination=MaxTurns(1),
        loop_guard=None,
    )
    pipe = Sequential(
        name="pipe", members=[agent("pre", said("p", 1)), chat, agent("post", said("q", 1))]
    )

    graph = await run_flow(pipe)

    assert counts(graph)[("pre", "host", "next")][0] == 1
    assert ("x", "post", "next") in graph.edges


async def test_an_agent_s_models_are_listed_once_whatever_their_names() -> None:
    turns = iter([call("lookup", {"q": "a"}, id="1"), call("lookup", {"q": "b"}, id="2"), "done"])
    worker = Agent(
        name="w", model=FunctionModel(lambda r: next(turns), name="gpt-4o, eu"), tools=[lookup]
    )

    graph = await run_flow(worker)

    assert graph.nodes["w"].detail == "test:gpt-4o, eu"
