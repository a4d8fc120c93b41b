"""`PeerNetwork`: agents message each other directly; no agent coordinates.

Each agent gets a `send_message(to, content)` tool (restricted by `edges`) and
a `finish(answer)` tool. Delivery happens in rounds: every agent with mail
wakes at once on its inbox; what they send is delivered in the next round.
Rounds make delivery order a function of the journal (sender, then call
order), so a resumed run sees the same mail. The run ends when an agent calls
`finish`, or when no messages remain (then the output is the message log).

With `mailboxes=` (Redis Streams: `orchestrion.bus.redis_mail.RedisMailboxes`),
each agent runs as its own run on any worker instead, and reads its mailbox
whenever it is free (see `patterns.peer_runs`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrion import keys
from orchestrion._json import JSON, dumps_str
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import RoundsExceeded as RoundsExceeded  # where users found it
from orchestrion.errors import UserError
from orchestrion.guards import LoopGuard
from orchestrion.loops import LoopWatch, MailRound
from orchestrion.patterns._names import agents_only, check_name
from orchestrion.patterns.peer_runs import Mailboxes, Peer, network_tools, run_network
from orchestrion.patterns.shape import Shape, mesh


@dataclass(frozen=True, slots=True)
class Mail:
    sender: str
    to: str
    content: str
    key: str = ""
    """The journal key of the `send_message` step: orders mail the same on every replay."""

    def to_json(self) -> dict[str, JSON]:
        return {"from": self.sender, "to": self.to, "content": self.content}


class Bus(Protocol):
    """Where mail waits between rounds. In-process here; a Redis Streams bus can
    implement the same two calls for agents in several processes."""

    def post(self, mail: Mail) -> None: ...

    def drain(self) -> dict[str, list[Mail]]:
        """Take every waiting message, by recipient, in posting order."""
        ...


class InProcessBus:
    def __init__(self) -> None:
        self._boxes: dict[str, list[Mail]] = defaultdict(list)

    def post(self, mail: Mail) -> None:
        self._boxes[mail.to].append(mail)

    def drain(self) -> dict[str, list[Mail]]:
        boxes, self._boxes = dict(self._boxes), defaultdict(list)
        return {to: sorted(mails, key=lambda m: (m.sender, m.key)) for to, mails in boxes.items()}


@dataclass(frozen=True, kw_only=True, eq=False)
class PeerNetwork:
    name: str
    agents: Sequence[Agent[Any, Any]]
    """Of any deps and outputs: each runs with the run's deps, and answers through
    its `finish` tool, not its output."""
    entry: str = ""
    """Who receives the run's input; default the first agent."""
    edges: Mapping[str, Sequence[str]] | None = None
    """Who may message whom; default everyone everyone else."""
    max_rounds: int = 10
    bus: Callable[[], Bus] = InProcessBus
    """Makes the mailbox store of one run (called once per invoke and resume): the
    in-process bus by default; mail is rebuilt from the journal on replay."""
    loop_guard: LoopGuard | None = field(default_factory=lambda: LoopGuard(repeats=2))
    """Acts when a round carries exactly the mail of an earlier round (`repeats`
    times): `warn` tells the recipients, `stop` ends the run, `ask` asks a human."""
    mailboxes: Mailboxes | None = None
    """Run each agent as its own run, on any worker, with its mailbox here (e.g.
    `RedisMailboxes(url)`); the network must then be submitted to a queue. An agent
    takes at most `max_rounds` turns (one per look at its mailbox); the loop guard
    watches each agent's mail. Each agent's run holds a worker slot while it waits."""
    description: str = ""
    _edges: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _peers: dict[str, Peer] = field(init=False, repr=False)
    """The agents as separate runs (with `mailboxes`), by agent name: fields, so that a
    worker finds them from the network's target."""

    def __post_init__(self) -> None:
        check_name("PeerNetwork", self.name)
        agents_only("PeerNetwork", self.name, self.agents)
        if self.max_rounds < 1:
            raise UserError(
                f"PeerNetwork {self.name!r}: max_rounds must be >= 1, not {self.max_rounds}."
            )
        names = [a.name for a in self.agents]
        if not names or len(set(names)) != len(names):
            raise UserError(
                f"PeerNetwork {self.name!r} needs agents with distinct names, got {names}."
            )
        entry = self.entry or names[0]
        edges = self.edges or {n: [m for m in names if m != n] for n in names}
        unknown = sorted({entry, *edges, *(t for ts in edges.values() for t in ts)} - set(names))
        if unknown:
            raise UserError(
                f"PeerNetwork {self.name!r}: unknown agents {unknown}; agents are {names}."
            )
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "_edges", {n: tuple(edges.get(n, ())) for n in names})
        peers = {}
        if self.mailboxes is not None:
            peers = {
                a.name: Peer(
                    name=f"{self.name}.{a.name}",
                    agent=a,
                    network=self.name,
                    allowed=self._edges[a.name],
                    mailboxes=self.mailboxes,
                    max_rounds=self.max_rounds,
                    loop_guard=self.loop_guard,
                )
                for a in self.agents
            }
        object.__setattr__(self, "_peers", peers)

    async def invoke(self, ctx: RunContext[Any], input: Any) -> str | dict[str, JSON]:
        """The answer given to `finish`, or, when the messages ran out without one,
        `{"messages": [...], "finished": None}`."""
        if self.mailboxes is not None:
            return await run_network(ctx, self.name, self._peers, self.entry, self.mailboxes, input)
        bus = self.bus()
        finished: list[tuple[str, str]] = []
        log: list[JSON] = []
        agents = {a.name: self._member(a, bus, finished) for a in self.agents}
        text = input if isinstance(input, str) else dumps_str(input)
        bus.post(Mail("user", self.entry, text))
        watch = LoopWatch(self.loop_guard)
        for round_ in range(1, self.max_rounds + 1):
            boxes = bus.drain()
            if not boxes:
                return {"messages": log, "finished": None}
            for mails in boxes.values():
                log.extend(m.to_json() for m in mails)
            mail = tuple(
                sorted((m.sender, m.to, m.content.strip()) for ms in boxes.values() for m in ms)
            )
            note = await watch.check(ctx, MailRound(network=self.name, mail=mail, round=round_))
            await ctx.gather(
                *(
                    ctx.run(agents[to], _inbox(mails) + note, key=keys.numbered("round", round_))
                    for to, mails in sorted(boxes.items())
                )
            )
            if finished:
                return min(finished)[1]  # by step key: the same finisher on every replay
        if not bus.drain():
            return {"messages": log, "finished": None}
        raise RoundsExceeded(
            f"PeerNetwork {self.name!r}: messages still flowing after max_rounds={self.max_rounds}. "
            "Raise max_rounds, or tell the agents when to finish."
        )

    def shape(self) -> Shape:
        """Any agent may end the run with `finish`, so each may give the output."""
        return mesh(self.agents, dict(self._edges), self.entry, "messages")

    def _member(
        self, agent: Agent[Any, Any], bus: Bus, finished: list[tuple[str, str]]
    ) -> Agent[Any, Any]:

        async def deliver(ctx: RunContext[Any], to: str, content: str) -> None:
            bus.post(Mail(agent.name, to, content, ctx.key))

        async def conclude(ctx: RunContext[Any], answer: str) -> None:
            finished.append((ctx.key, answer))

        # Local tools: replay runs them again, so the bus and the answer are rebuilt.
        allowed = self._edges[agent.name]
        extra = network_tools(allowed, deliver, conclude, when="in the next round", local=True)
        return dataclasses.replace(agent, tools=[*agent.tools, *extra])


def _inbox(mails: list[Mail]) -> str:
    return "\n\n".join(f"Message from {m.sender}:\n{m.content}" for m in mails)
