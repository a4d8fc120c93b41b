"""How a pattern is put together, for a picture of a team before it runs
(`orchestrion graph`): its members, and who may pass work to whom.

Each pattern says it of itself with a `shape()` method; a workflow of your own can
too (`Shaped`), else it is drawn as one box, as a `@workflow` function is (what it
runs is known only when it runs: `orchestrion show RUN --graph` draws that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from orchestrion.runnable import Runnable

LinkKind = Literal[
    "input",  # the pattern's input reaches a member
    "output",  # a member's output is the pattern's
    "delegates",  # a manager runs a worker and reads its output (Supervisor)
    "hands off",  # an agent passes the conversation and control on (Handoff)
    "messages",  # an agent may send mail to another (PeerNetwork)
    "next",  # a member's output is the next member's input (Sequential)
    "fans out",  # every branch gets the input at once (Concurrent)
    "aggregates",  # a branch's result goes to the aggregator (Concurrent)
    "selects",  # a selector picks the next speaker (GroupChat)
    "speaks after",  # the turn passes from one speaker to the next (GroupChat)
]
"""What flows along a link, said the way the graph's edge labels say it."""


@dataclass(frozen=True, slots=True)
class Link:
    """Work may flow from member `source` to member `target` (indices into
    `Shape.members`); None is the pattern's own input (as a source) or output (as
    a target)."""

    source: int | None
    target: int | None
    kind: LinkKind


@dataclass(frozen=True, slots=True)
class Shape:
    """A pattern's members, in their order, and the links between them."""

    members: tuple[Runnable, ...]
    links: tuple[Link, ...]


@runtime_checkable
class Shaped(Protocol):
    """A workflow that can say how it is put together."""

    def shape(self) -> Shape: ...


def chain(members: Sequence[Runnable], kind: LinkKind) -> Shape:
    """Members one after the other: input -> first -> ... -> last -> output."""
    last = len(members) - 1
    links = [Link(None, 0, "input"), *(Link(i, i + 1, kind) for i in range(last))]
    return Shape(tuple(members), (*links, Link(last, None, "output")))


def mesh(
    members: Sequence[Runnable], routes: dict[str, Sequence[str]], entry: str, kind: LinkKind
) -> Shape:
    """Members that pass work to each other along `routes` (by name), the input going
    to `entry`; any of them may give the output."""
    at = {m.name: i for i, m in enumerate(members)}
    links = [Link(None, at[entry], "input")]
    links += [Link(at[s], at[t], kind) for s, targets in routes.items() for t in targets]
    links += [Link(i, None, "output") for i in range(len(members))]
    return Shape(tuple(members), tuple(links))
