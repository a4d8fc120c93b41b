"""A team's graph before it runs: its patterns as clusters, its agents and their
tools as nodes, and who may pass work to whom as edges (`orchestrion graph`).

Each pattern says how it is put together (`Shape`); a member pattern is drawn
inside its parent's cluster, and a link to it goes to the members that take its
input (from the members that give its output). A workflow that cannot say what
it runs (`@workflow`) is one node.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from orchestrion.agent import Agent, fallback_chain
from orchestrion.errors import UserError
from orchestrion.graph.model import Cluster, Graph, Node
from orchestrion.patterns.shape import Link, LinkKind, Shape, Shaped
from orchestrion.runnable import Runnable

INPUT, OUTPUT = "(input)", "(output)"
"""The ids of the run's input and output nodes (no member name has parentheses)."""


@dataclass(frozen=True, slots=True)
class _End:
    """A node that takes a member's input (or gives its output), and what the link
    to it carries inside the member (`fans out` to a Concurrent's branches)."""

    node: str
    kind: LinkKind


@dataclass(frozen=True, slots=True)
class _Ends:
    entries: tuple[_End, ...]
    exits: tuple[_End, ...]


def structure(root: Runnable) -> Graph:
    """The graph of `root` and everything it holds."""
    graph = Graph(title=root.name, kind="structure")
    graph.node(Node(INPUT, "input", "input"))
    ends = _place(graph, root, "", None, ())
    graph.node(Node(OUTPUT, "output", "output"))
    for end in ends.entries:
        graph.edge(INPUT, end.node, end.kind)
    for end in ends.exits:
        graph.edge(end.node, OUTPUT, end.kind)
    return graph


def _place(
    graph: Graph, member: Runnable, scope: str, cluster: str | None, within: tuple[object, ...]
) -> _Ends:
    """Add `member` (and what it holds) inside `cluster`, itself inside the patterns
    `within`; where its input and output are."""
    at = f"{scope}:{member.name}" if scope else member.name
    if isinstance(member, Agent):
        return _agent(graph, member, at, cluster)
    if not isinstance(member, Shaped):
        graph.node(Node(at, "workflow", member.name, "custom flow", cluster))
        return _Ends((_End(at, "input"),), (_End(at, "output"),))
    if any(member is outer for outer in within):
        raise UserError(
            f"{_named(member)} holds itself (through {at!r}), so it would run forever: make "
            "its members other objects."
        )
    shape = _checked(member, member.shape())
    graph.clusters.setdefault(at, Cluster(at, _named(member), cluster))
    placed = [_place(graph, m, at, at, (*within, member)) for m in shape.members]
    return _link(graph, shape, placed)


def _named(member: Runnable) -> str:
    return f"{type(member).__name__} {member.name}"


def _checked(member: Runnable, shape: object) -> Shape:
    """A workflow's own `shape()` is checked: a link to no member is a clear error."""
    if not isinstance(shape, Shape):
        raise UserError(f"{_named(member)}: shape() gave {shape!r}, not a Shape(members, links).")
    count = len(shape.members)
    for link in shape.links:
        ends = [end for end in (link.source, link.target) if end is not None]
        if not all(isinstance(end, int) and 0 <= end < count for end in ends):
            raise UserError(
                f"{_named(member)}: shape() has {link}, but its members are numbered 0 to "
                f"{count - 1} (None is the pattern's own input or output)."
            )
    return shape


def _link(graph: Graph, shape: Shape, placed: list[_Ends]) -> _Ends:
    entries: list[_End] = []
    exits: list[_End] = []
    for link in shape.links:
        sources = _sources(link, placed)
        targets = placed[link.target].entries if link.target is not None else ()
        if link.source is None:
            entries += [_End(t.node, _within(link.kind, t.kind)) for t in targets]
        elif link.target is None:
            exits += [_End(s.node, _within(link.kind, s.kind, "output")) for s in sources]
        else:
            for source in sources:
                for target in targets:
                    graph.edge(source.node, target.node, link.kind)
    return _Ends(tuple(entries), tuple(exits))


def _sources(link: Link, placed: list[_Ends]) -> tuple[_End, ...]:
    return placed[link.source].exits if link.source is not None else ()


def _within(outer: LinkKind, inner: LinkKind, plain: LinkKind = "input") -> LinkKind:
    """What a link into (or out of) a member pattern is labelled: the outer link's
    kind, unless that just says `input` (`output`): then what the member says."""
    return inner if outer == plain else outer


def _agent(graph: Graph, agent: Agent[Any, Any], at: str, cluster: str | None) -> _Ends:
    """The agent and its tools, then its fallback agents in the order they take over
    (theirs too, depth first), each one's output the agent's."""
    chain = fallback_chain(agent)
    nodes = [at, *(f"{at}:fallback:{f.name}" for f in chain[1:])]
    for one, node in zip(chain, nodes, strict=True):
        graph.node(Node(node, "agent", one.name, _model_of(one), cluster))
        for name, tool in one.tool_map.items():
            if tool.role is None:  # control tools (transfers, delegations, final result) are edges
                about = tool.effect + (", approval" if tool.approval else "")
                graph.node(Node(f"{node}:tool:{name}", "tool", name, about, cluster))
                graph.edge(node, f"{node}:tool:{name}", "calls")
    for before, after in itertools.pairwise(nodes):
        graph.edge(before, after, "falls back")
    return _Ends((_End(at, "input"),), tuple(_End(n, "output") for n in nodes))


def _model_of(agent: Agent[Any, Any]) -> str:
    model = agent.model
    named = "default model" if model is None else model if isinstance(model, str) else model.name
    fallback = agent.policy.fallback if agent.policy is not None else None
    models = [
        f if isinstance(f, str) else f.name for f in fallback or () if not isinstance(f, Agent)
    ]
    output = (
        ""
        if agent.output_type is str
        else f" → {getattr(agent.output_type, '__name__', agent.output_type)}"
    )
    return " / ".join([named, *models]) + output
