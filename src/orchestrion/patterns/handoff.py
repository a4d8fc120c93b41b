"""`Handoff`: one active agent at a time; an agent passes control with `transfer_to_<agent>`.

Support triage: a triage agent answers or transfers to billing or technical,
which may transfer on. The next agent receives the conversation so far,
filtered by `input_filter`. Every hop is a child run keyed `hop-N`, so a
resumed run replays the hops already made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from orchestrion import keys
from orchestrion._json import dumps_str
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import MaxHandoffsExceeded as MaxHandoffsExceeded  # where users found it
from orchestrion.errors import UserError
from orchestrion.guards import LoopGuard
from orchestrion.loops import Hop, LoopWatch
from orchestrion.messages import (
    Conversation,
    HandedOff,
    Message,
    ModelResponse,
    ToolResult,
    UserMessage,
)
from orchestrion.patterns._names import agents_only, check_name
from orchestrion.patterns.shape import Shape, mesh

InputFilter = Callable[[tuple[Message, ...]], tuple[Message, ...]]


def text_only(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """An input filter: what the user said and what agents answered, without
    tool calls or results (for agents that should not see other agents' tools)."""
    kept: list[Message] = []
    for m in messages:
        if isinstance(m, UserMessage):
            kept.append(m)
        elif isinstance(m, ModelResponse) and m.text:
            kept.append(ModelResponse(text=m.text))
    return tuple(kept)


OutputT = TypeVar("OutputT", covariant=True, default=Any)


@dataclass(frozen=True, kw_only=True, eq=False)
class Handoff(Generic[OutputT]):
    """Agents that pass control to each other; the first to answer ends the run.
    Its output is that agent's: what the agents' outputs have in common (`str`
    for agents of text)."""

    name: str
    agents: Sequence[Agent[Any, OutputT]]
    start: str = ""
    """The agent that takes the first message; default the first one."""
    routes: Mapping[str, Sequence[str]] | None = None
    """Who may transfer to whom; default everyone to everyone else."""
    input_filter: InputFilter | None = None
    """What history the next agent receives; default all of it. See `text_only`."""
    max_handoffs: int = 5
    loop_guard: LoopGuard | None = field(default_factory=lambda: LoopGuard(repeats=2))
    """Acts when control bounces between two agents (A->B->A->B: `repeats` round
    trips): `warn` tells the next agent, `stop` ends the run, `ask` asks a human."""
    description: str = ""
    _agents: dict[str, Agent[Any, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_name("Handoff", self.name)
        agents_only("Handoff", self.name, self.agents)
        if self.max_handoffs < 0:
            raise UserError(
                f"Handoff {self.name!r}: max_handoffs must be >= 0, not {self.max_handoffs}."
            )
        names = [a.name for a in self.agents]
        if not names or len(set(names)) != len(names):
            raise UserError(f"Handoff {self.name!r} needs agents with distinct names, got {names}.")
        start = self.start or names[0]
        if start not in names:
            raise UserError(f"Handoff {self.name!r}: start {start!r} is not one of {names}.")
        routes = self.routes or {n: [m for m in names if m != n] for n in names}
        for source, targets in routes.items():
            unknown = [t for t in (source, *targets) if t not in names]
            if unknown:
                raise UserError(
                    f"Handoff {self.name!r}: route {source!r} -> {list(targets)} names unknown "
                    f"agents {unknown}; agents are {names}."
                )
        agents = {
            a.name: dataclasses.replace(a, handoffs=tuple(routes.get(a.name, ())))
            for a in self.agents
        }
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "_agents", agents)

    async def invoke(self, ctx: RunContext[Any], input: Any) -> OutputT:
        active = self._agents[self.start]
        given: Any = input
        watch = LoopWatch(self.loop_guard)
        for hop in range(self.max_handoffs + 1):
            outcome = await ctx.run(active, given, key=keys.numbered("hop", hop))
            if not isinstance(outcome, HandedOff):
                answer: OutputT = outcome  # an agent's own output: one of `agents`' types
                return answer
            messages = outcome.messages
            if self.input_filter is not None:
                messages = self.input_filter(messages)
            seen = Hop(handoff=self.name, source=active.name, target=outcome.target, hop=hop)
            note = await watch.check(ctx, seen)
            given = Conversation((*messages, UserMessage(note)) if note else messages)
            active = self._agents[outcome.target]
        raise MaxHandoffsExceeded(
            f"Handoff {self.name!r}: more than max_handoffs={self.max_handoffs} transfers; the "
            "agents keep passing the conversation on. Raise max_handoffs or tighten the routes."
        )

    def shape(self) -> Shape:
        routes = {name: agent.handoffs for name, agent in self._agents.items()}
        return mesh(self.agents, routes, self.start, "hands off")


def transcript(messages: tuple[Message, ...]) -> str:
    """The conversation as text (for logs and tests)."""
    lines = []
    for m in messages:
        if isinstance(m, UserMessage):
            lines.append(f"user: {m.content}")
        elif isinstance(m, ModelResponse):
            lines.append(f"agent: {m.text or dumps_str([c.name for c in m.tool_calls])}")
        elif isinstance(m, ToolResult):
            lines.append(f"tool {m.name}: {m.content}")
    return "\n".join(lines)
