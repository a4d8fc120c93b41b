"""A `PeerNetwork` whose agents run as separate runs, on any worker, and talk
through mailboxes outside the process (`PeerNetwork(mailboxes=...)`).

The network's run queues one run per agent (`ctx.submit`), delivers the input to
the entry agent's mailbox, then waits for the network's first report: an agent
called `finish`, an agent passed `max_rounds`, an agent's run failed, or no mail
is left in flight (every message posted was acted on). It then stops every agent
and ends with that outcome.

Each agent's run loops: take every message waiting in its mailbox (journaled,
and committed before the mailbox is told: a resumed agent reads the same mail,
and mail read but not journaled is delivered again), act on it in one turn (its
`send_message` and `finish` are write tools, each delivered once whatever the
replays: its id is the call's idempotency key), commit the turn, then say the
mail was acted on. There are no rounds: an agent reads its mailbox whenever it is
free, so the order in which mail arrives is whatever the workers make it, and
the journal, not the order, is what a replay follows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from orchestrion import keys
from orchestrion._json import JSON, dumps_str
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import PeerFailed, RoundsExceeded, RunError, Suspension, UserError
from orchestrion.guards import LoopGuard
from orchestrion.loops import LoopWatch, MailRound
from orchestrion.tools.tool import ModelRetry, Tool


class Mailboxes(Protocol):
    """Where the agents of a network in separate runs leave each other mail:
    `orchestrion.bus.redis_mail.RedisMailboxes` (Redis Streams). `box` names one
    network's run (its mailboxes, its reports); every call may be repeated."""

    async def open(self, box: str, network: str, run_id: str, agents: Sequence[str]) -> None:
        """Make the mailboxes of `agents` for network run `box`."""
        ...

    async def post(self, box: str, mail_id: str, sender: str, to: str, content: str) -> None:
        """Deliver a message to `to`, once per `mail_id`; it is in flight until `done`."""
        ...

    async def receive(self, box: str, agent: str, reader: str) -> list[dict[str, JSON]]:
        """Wait for `agent`'s mail and take all that waits, as strings (`{"id", "entry",
        "from", "content"}`, or `{"entry", "stop": "1"}` when the network stops it): first
        what `reader` took before and did not `ack`, then new mail."""
        ...

    async def ack(self, box: str, agent: str, entries: Sequence[str]) -> None:
        """The mail taken at `entries` is journaled: it is not delivered again."""
        ...

    async def done(self, box: str, mail_ids: Sequence[str]) -> None:
        """The mail `mail_ids` was acted on; when no mail is left in flight, the
        network reports `{"type": "quiet"}` and its agents are stopped."""
        ...

    async def report(self, box: str, report_id: str, report: dict[str, JSON]) -> None:
        """Tell the network something (`finish`, `exceeded`, `failed`), once per
        `report_id`; each ends the network, so its agents are stopped."""
        ...

    async def outcome(self, box: str) -> dict[str, JSON]:
        """Wait for the network's first report; `quiet` comes with every message
        posted (`messages`, as `{"from", "to", "content"}`)."""
        ...

    async def close(self, box: str, agents: Sequence[str]) -> None:
        """Stop the agents (each gets a stop in its mailbox); the mailboxes expire."""
        ...


@dataclass(frozen=True, kw_only=True, eq=False)
class Peer:
    """One agent of a network with mailboxes, as its own run."""

    name: str
    """`<network>.<agent>`: the name of the agent's runs."""
    agent: Agent[Any, Any]
    network: str
    allowed: tuple[str, ...]
    mailboxes: Mailboxes
    max_rounds: int
    loop_guard: LoopGuard | None
    description: str = ""

    async def invoke(self, ctx: RunContext[Any], input: Any) -> dict[str, JSON]:
        """`{"turns": N}` once the network stops it."""
        box = input.get("mailboxes") if isinstance(input, dict) else None
        if not isinstance(box, str):
            raise UserError(
                f"{self.name!r} runs as an agent of PeerNetwork {self.network!r}, started by "
                f"the network's run with {{'mailboxes': ...}}, not on {input!r}."
            )
        mail, me = self.mailboxes, self.agent.name
        member = self._member(box)
        watch = LoopWatch(self.loop_guard)
        turn = reads = 0
        try:
            while True:
                reads += 1
                taken = await ctx.step(
                    keys.numbered("inbox", reads),
                    lambda: mail.receive(box, me, ctx.run_id),
                    durable=True,  # journaled before the mailbox lets it go
                    wait=True,  # mail taken and not journaled is taken again
                )
                batch = _letters(taken)
                await mail.ack(box, me, [m["entry"] for m in batch])
                if any("stop" in m for m in batch):
                    return {"turns": turn}
                letters = [m for m in batch if "id" in m]
                if not letters:
                    continue
                if turn == self.max_rounds:
                    exceeded: dict[str, JSON] = {"type": "exceeded", "agent": me}
                    exceeded["run_id"] = ctx.run_id
                    await mail.report(box, f"{ctx.run_id}:exceeded", exceeded)
                    return {"turns": turn}
                turn += 1
                seen = tuple(sorted((m["from"], me, m["content"].strip()) for m in letters))
                note = await watch.check(
                    ctx, MailRound(network=self.network, mail=seen, round=turn)
                )
                text = "\n\n".join(f"Message from {m['from']}:\n{m['content']}" for m in letters)
                await ctx.run(member, text + note, key=keys.numbered("turn", turn))
                # The turn is committed before the network hears the mail was acted on:
                # else a crash could lose a turn the network already counted as done.
                await ctx.step(keys.numbered("acted", turn), _acted, durable=True)
                await mail.done(box, [m["id"] for m in letters])
        except Suspension:
            raise  # waits for a human; the network waits with it
        except RunError as exc:
            error: dict[str, JSON] = {"type": type(exc).__name__, "message": str(exc)}
            failed: dict[str, JSON] = {"type": "failed", "agent": me, "error": error}
            failed["run_id"] = ctx.run_id
            await mail.report(box, f"{ctx.run_id}:failed", failed)
            raise

    def _member(self, box: str) -> Agent[Any, Any]:
        """The agent, with a `send_message` and a `finish` that go through the mailboxes."""
        mail, me = self.mailboxes, self.agent.name

        async def deliver(ctx: RunContext[Any], to: str, content: str) -> None:
            await mail.post(box, ctx.idempotency_key, me, to, content)

        async def conclude(ctx: RunContext[Any], answer: str) -> None:
            report: dict[str, JSON] = {"type": "finish", "agent": me, "answer": answer}
            await mail.report(box, ctx.idempotency_key, report)

        # Writes: the model's response is committed before a message leaves, so a
        # resumed agent sends that same message (posted once), never a new one.
        extra = network_tools(self.allowed, deliver, conclude, when="when it is next free")
        return dataclasses.replace(self.agent, tools=[*self.agent.tools, *extra])


def network_tools(
    allowed: Sequence[str],
    deliver: Callable[[RunContext[Any], str, str], Awaitable[None]],
    conclude: Callable[[RunContext[Any], str], Awaitable[None]],
    *,
    when: str,
    local: bool = False,
) -> list[Tool[Any]]:
    """The tools a network gives each agent: `send_message` (when it may message
    someone) and `finish`; `local` tools (an in-process bus), else write tools."""

    async def send_message(ctx: RunContext[Any], to: str, content: str) -> str:
        """Send a message to another agent.

        Args:
            to: The agent to write to.
            content: The message.
        """
        if to not in allowed:
            raise ModelRetry(f"You cannot message {to!r}; you can message: {list(allowed)}.")
        await deliver(ctx, to, content)
        return f"sent to {to}"

    async def finish(ctx: RunContext[Any], answer: str) -> str:
        """Give the final answer for the whole network; the run ends with it.

        Args:
            answer: The answer to the user's request.
        """
        await conclude(ctx, answer)
        return "finished"

    effect: Literal["read", "write"] = "read" if local else "write"
    tools: list[Tool[Any]] = [Tool(function=finish, effect=effect, local=local)]
    if allowed:
        about = f"Send a message to another agent; it reads it {when}."
        tools.insert(0, Tool(function=send_message, description=about, effect=effect, local=local))
    return tools


async def _acted() -> None:
    return None


def _letters(taken: JSON) -> list[dict[str, str]]:
    """The mail a step took from a mailbox, as the journal holds it."""
    if isinstance(taken, list) and all(
        isinstance(m, dict) and isinstance(m.get("entry"), str) for m in taken
    ):
        return [{k: str(v) for k, v in m.items()} for m in taken if isinstance(m, dict)]
    raise RunError(f"A mailbox gave {taken!r}: expected a list of messages with an 'entry'.")


async def run_network(
    ctx: RunContext[Any],
    name: str,
    peers: Mapping[str, Peer],
    entry: str,
    mailboxes: Mailboxes,
    input: Any,
) -> str | dict[str, JSON]:
    """The run of a network with mailboxes: queue its agents, deliver the input,
    wait for the first report, stop the agents."""
    box = ctx.idempotency_key  # this network's invocation in this run: stable on replay
    agents = sorted(peers)
    await ctx.step("mailboxes", lambda: mailboxes.open(box, name, ctx.run_id, agents))
    runs = {a: await ctx.submit(peers[a], {"mailboxes": box}, name=a) for a in agents}
    text = input if isinstance(input, str) else dumps_str(input)
    await ctx.step("deliver", lambda: mailboxes.post(box, f"{box}:input", "user", entry, text))
    outcome = await ctx.step("outcome", lambda: mailboxes.outcome(box), wait=True)
    await ctx.step("close", lambda: mailboxes.close(box, agents))
    if not isinstance(outcome, dict):
        raise RunError(f"PeerNetwork {name!r}: its mailboxes reported {outcome!r}.")
    kind, agent = outcome.get("type"), outcome.get("agent")
    if kind == "finish":
        return str(outcome.get("answer"))
    if kind == "quiet":
        return {"messages": outcome.get("messages", []), "finished": None}
    if kind == "exceeded":
        raise RoundsExceeded(
            f"PeerNetwork {name!r}: {agent} still had mail after max_rounds turns (its run "
            f"{outcome.get('run_id')}). Raise max_rounds, or tell the agents when to finish."
        )
    if kind == "failed":
        error = outcome.get("error")
        found = error if isinstance(error, dict) else {}
        raise PeerFailed(
            f"PeerNetwork {name!r}: agent {agent} (run {outcome.get('run_id')}) failed with "
            f"{found.get('type')}: {found.get('message')}"
        )
    raise RunError(
        f"PeerNetwork {name!r}: its mailboxes reported {outcome!r}, which this orchestrion "
        f"does not know (agents' runs: {runs}): are the workers on different versions of "
        "orchestrion? Run one version, then resume the run."
    )
