"""The loop guard at work: finding loops, and acting on them, for agents and patterns.

A run of an agent or of a pattern keeps one `LoopWatch` and tells it what just
happened. An agent's turn ends with `calls_done`, its results: the same call
again, or a delegation whose worker returns a result it already gave, however it
was asked. Everything else goes through `check`, with a *sighting* (a closed union):

- `WriteAhead`: an agent is about to make a call of this turn (before any of
  them runs): a write tool called turn after turn, whatever its arguments;
- `Hop`: a `Handoff` passed control on: control bouncing between two agents;
- `ChatTurn`: a `GroupChat` participant spoke: it said, word for word, what it said before;
- `MailRound`: a `PeerNetwork` round is about to be delivered: the mail of an earlier round.

On a loop, the watch applies the guard's policy (`warn` returns a note for the agent
or the next speaker, `stop` raises `LoopDetected`, `ask` asks a human first) and
reports it to the run's event sinks. Everything is decided from journaled data
(responses, tool results, members' outputs), so a replay finds the same loops at
the same places. The configuration, `LoopGuard`, is a definition (`orchestrion.guards`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Literal, assert_never

from orchestrion import keys
from orchestrion._json import JSON
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import LoopDetected
from orchestrion.guards import LoopGuard
from orchestrion.messages import ToolCall, ToolResult
from orchestrion.tools.roles import Delegate, FinalResult, Transfer

LoopKind = Literal["tool", "write", "delegation", "handoff", "no_progress"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WriteAhead:
    """Call `index` of an agent's turn is about to run (no call of the turn has yet)."""

    agent: Agent[Any]
    calls: tuple[ToolCall, ...]
    index: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Hop:
    """Handoff `handoff` passed control from agent `source` to `target`, its `hop`-th transfer."""

    handoff: str
    source: str
    target: str
    hop: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatTurn:
    """In group chat `chat`, `speaker` said `said` at turn `turn`."""

    chat: str
    speaker: str
    said: str
    turn: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MailRound:
    """Peer network `network` is about to deliver the mail of round `round`."""

    network: str
    mail: tuple[tuple[str, str, str], ...]
    """The round's messages as (sender, recipient, text), sorted: compared whole, never read."""
    round: int


Sighting = WriteAhead | Hop | ChatTurn | MailRound


@dataclass(frozen=True, slots=True)
class _Write:
    """One call of a write tool, as the agent's later warnings list it."""

    turn: str
    arguments: str
    result: str


class _Memory:
    """What one run of an agent or a pattern did so far, as far as loops go."""

    __slots__ = (
        "attempts",
        "delegations",
        "outcomes",
        "path",
        "rounds",
        "said",
        "write_notes",
        "writes",
    )

    def __init__(self) -> None:  # one per agent run: no dataclass factories
        self.attempts: dict[str, list[str]] = {}
        """Results of each distinct call (tool name and argument text)."""
        self.outcomes: dict[tuple[str, str], list[str]] = {}
        """Tasks given to each worker that returned a given result."""
        self.delegations: list[str] = []
        """Workers in the order they were delegated to."""
        self.writes: dict[str, list[_Write]] = {}
        """Each call of each write tool."""
        self.write_notes: dict[tuple[str, int], str] = {}
        """Notes found before a turn's writes ran, by (turn key, call index): given with
        their results."""
        self.path: list[str] = []
        """The agents a handoff passed control through, in order."""
        self.said: dict[tuple[str, str], list[int]] = {}
        """The turns at which each participant said each (whitespace-normalised) text."""
        self.rounds: dict[tuple[tuple[str, str, str], ...], list[int]] = {}
        """The rounds that carried each set of mail."""


_ENDS_TURN = (FinalResult, Transfer)


class LoopWatch:
    """The loop guard of one run of an agent or a pattern; None as guard: it never acts."""

    __slots__ = ("_guard", "_memory")

    def __init__(self, guard: LoopGuard | None) -> None:
        self._guard = guard
        self._memory: _Memory | None = None

    @property
    def _seen(self) -> _Memory:
        """What the watch saw so far: made at its first sighting (most agent runs of
        a team's workers make no tool call at all)."""
        memory = self._memory
        if memory is None:
            memory = self._memory = _Memory()
        return memory

    def watches_write(self, agent: Agent[Any, Any], call: ToolCall) -> bool:
        """Whether `call`, about to run, is one a `WriteAhead` sighting is for (a call
        of a write tool, with writes watched): the agent loop skips the others."""
        guard = self._guard
        if guard is None or guard.write_repeats is None:
            return False
        tool = agent.tool_map.get(call.name)
        return tool is not None and tool.effect == "write"

    async def check(self, ctx: RunContext[Any], seen: Sighting) -> str:
        """Act on the loop `seen` closes, if any: "" when there is none (or no guard),
        else the note to pass on (its own text starts with a blank line and
        `[loop guard]`, except a handoff's, which is a message of its own).
        `ctx` is the scope of the agent's turn or of the pattern: an `ask`
        interrupt is a step there."""
        guard = self._guard
        if guard is None:
            return ""
        match seen:
            case WriteAhead():
                return await self._write_ahead(ctx, guard, seen)
            case Hop():
                return await self._hop(ctx, guard, seen)
            case ChatTurn():
                return await self._chat_turn(ctx, guard, seen)
            case MailRound():
                return await self._mail_round(ctx, guard, seen)
            case _:
                assert_never(seen)

    # -- an agent's calls ------------------------------------------------------

    async def _write_ahead(self, ctx: RunContext[Any], guard: LoopGuard, seen: WriteAhead) -> str:
        """A write tool the agent now calls in its `write_repeats`-th turn. Several calls
        in one answer are one decision (a batch); calling again after seeing the results
        is the loop. `stop` and `ask` act before the write happens; `warn`'s note comes
        with the call's result, and at twice `write_repeats` turns the run stops before
        the write."""
        c = seen.calls[seen.index]
        tool = seen.agent.tool_map.get(c.name)
        if guard.write_repeats is None or tool is None or tool.effect != "write":
            return ""
        if any(earlier.name == c.name for earlier in seen.calls[: seen.index]):
            return ""  # the tool's first call of this turn speaks for the batch
        made = self._seen.writes.get(c.name, [])
        turns = len({w.turn for w in made}) + 1
        if turns < guard.write_repeats:
            return ""
        note = await _write_loop(ctx, seen.agent, guard, seen.index, c, made, turns)
        self._seen.write_notes[(ctx.key, seen.index)] = note
        return note

    async def calls_done(
        self,
        ctx: RunContext[Any],
        agent: Agent[Any, Any],
        calls: tuple[ToolCall, ...],
        results: list[ToolResult],
    ) -> list[ToolResult]:
        """The turn's `results` (of `calls`), each with the note of the loop it closes,
        if any: the same call again, a delegation going in circles, or a write warned
        about before it ran. `results` itself when the agent has no guard."""
        guard = self._guard
        if guard is None:
            return results
        memory = self._seen
        watched: list[ToolResult] = []
        # The bookkeeping inline, a reaction only once a loop closes: every call of
        # every agent passes this way.
        for i, result in enumerate(results):
            c = calls[i]
            role = agent.tool_roles.get(c.name)
            if role is not None and isinstance(role, _ENDS_TURN):
                watched.append(result)  # ends the turn: nothing to repeat
                continue
            tries = memory.attempts.setdefault(f"{c.name}\x00{c.arguments.strip()}", [])
            tries.append(result.content)
            note = ""
            if len(tries) >= guard.repeats:
                note = await _repeated_call(ctx, agent, guard, i, c, result, tries)
            if not note and isinstance(role, Delegate) and not result.is_error:
                memory.delegations.append(role.worker)
                tasks = memory.outcomes.setdefault((role.worker, result.content.strip()), [])
                tasks.append(c.arguments)
                if len(tasks) >= guard.repeats:
                    note = await _circling_delegation(ctx, agent, guard, i, c, role, tasks, memory)
            tool = agent.tool_map.get(c.name)
            if tool is not None and tool.effect == "write":
                memory.writes.setdefault(c.name, []).append(
                    _Write(ctx.key, c.arguments, result.content)
                )
                note = note or memory.write_notes.pop((ctx.key, i), "")
            watched.append(
                ToolResult(result.call_id, result.name, result.content + note, result.is_error)
                if note
                else result
            )
        return watched

    # -- patterns --------------------------------------------------------------

    async def _hop(self, ctx: RunContext[Any], guard: LoopGuard, seen: Hop) -> str:
        """A note for the next agent when control bounces between two agents
        (A->B->A->B: `repeats` round trips), else ""."""
        path = self._seen.path
        if not path:
            path.append(seen.source)
        path.append(seen.target)
        span = 2 * guard.repeats
        tail = path[-span:]
        if (
            len(tail) < span
            or len(set(tail)) != 2
            or any(a == b for a, b in itertools.pairwise(tail))
        ):
            return ""
        a, b, name = tail[0], tail[1], seen.handoff
        await _react(
            ctx,
            guard,
            kind="handoff",
            subject=f"{a} <-> {b}",
            times=guard.repeats,
            question={"handoff": name, "bouncing": [a, b], "path": list(path)},
            name=keys.numbered("loop-guard", seen.hop),
            stop=(
                f"Handoff {name!r}: control bounced between {a!r} and {b!r} {guard.repeats} "
                f"times ({' -> '.join(path)}); its loop guard stopped the run. Tighten the "
                "routes or the agents' instructions, or use LoopGuard(policy='warn')."
            ),
        )
        return (
            f"[loop guard] This conversation has bounced between {a} and {b} {guard.repeats} "
            f"times ({' -> '.join(path)}). Do not transfer it back: answer it yourself or pick "
            "another agent."
        )

    async def _chat_turn(self, ctx: RunContext[Any], guard: LoopGuard, seen: ChatTurn) -> str:
        """A note for the next speaker when `speaker` just repeated itself (`repeats` times)."""
        speaker, chat = seen.speaker, seen.chat
        turns = self._seen.said.setdefault((speaker, " ".join(seen.said.split())), [])
        turns.append(seen.turn)
        if len(turns) < guard.repeats:
            return ""
        listed = ", ".join(map(str, turns))
        await _react(
            ctx,
            guard,
            kind="no_progress",
            subject=chat,
            times=len(turns),
            question={"chat": chat, "speaker": speaker, "turns": list(turns)},
            name=keys.numbered("loop-guard", turns[-1]),
            stop=(
                f"GroupChat {chat!r}: {speaker} said the same thing {len(turns)} times "
                f"(turns {listed}); its loop guard stopped the run. Give the chat a termination "
                "condition that ends it sooner, or use LoopGuard(policy='warn')."
            ),
        )
        return (
            f"\n\n[loop guard] {speaker} has now said the same thing {len(turns)} times "
            f"(turns {listed}): the conversation is going in circles. Say something new, "
            "or bring it to a conclusion."
        )

    async def _mail_round(self, ctx: RunContext[Any], guard: LoopGuard, seen: MailRound) -> str:
        """A note for this round's recipients when its mail repeats an earlier round's."""
        rounds = self._seen.rounds.setdefault(seen.mail, [])
        rounds.append(seen.round)
        if len(rounds) < guard.repeats:
            return ""
        listed, network = ", ".join(map(str, rounds)), seen.network
        await _react(
            ctx,
            guard,
            kind="no_progress",
            subject=network,
            times=len(rounds),
            question={"network": network, "rounds": list(rounds)},
            name=keys.numbered("loop-guard", rounds[-1]),
            stop=(
                f"PeerNetwork {network!r}: rounds {listed} carried exactly the same messages; "
                "its loop guard stopped the run. Tell the agents when to finish, or use "
                "LoopGuard(policy='warn')."
            ),
        )
        return (
            f"\n\n[loop guard] These messages repeat rounds {listed} word for word: the "
            "network is going in circles. Do not send them again: act on them, say something "
            "new, or call finish."
        )


async def _react(
    ctx: RunContext[Any],
    guard: LoopGuard,
    *,
    kind: LoopKind,
    subject: str,
    times: int,
    question: dict[str, JSON],
    name: str,
    stop: str,
) -> None:
    """Apply `guard.policy` to a loop found: return (the caller then warns), or raise
    `LoopDetected` with the message `stop` (which says what looped and how to fix
    it). `ask` first asks a human, through an interrupt called `name`, whether to
    go on; `question` is its payload."""
    action = guard.policy
    if action == "ask":
        answer = await ctx.interrupt(
            {**question, "loop": kind, "times": times},
            name=name,
            answer_type=Literal["continue", "stop"],
        )
        action = "warn" if answer == "continue" else "stop"
    ctx.loop_detected(kind, subject, times, action)
    if action == "stop":
        raise LoopDetected(stop)


async def _repeated_call(
    ctx: RunContext[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    result: ToolResult,
    tries: list[str],
) -> str:
    """React to call `c` made again with the same arguments (`tries`: the results of
    each time, this one's last; as many as `guard.repeats` or more)."""
    fix = "or use LoopGuard(policy='warn')"
    if guard.policy == "warn" and tries.count(result.content) >= 2 * guard.repeats:
        # Warned since the `repeats`-th call, and the same answer again: stuck, not polling.
        guard = replace(guard, policy="stop")
        fix = (
            f"or raise LoopGuard(repeats=...): it got the same result "
            f"{tries.count(result.content)} times, though warned since the {_nth(guard.repeats)}"
        )
    await _react(
        ctx,
        guard,
        kind="tool",
        subject=c.name,
        times=len(tries),
        question={"agent": agent.name, "tool": c.name, "arguments": c.arguments},
        name=keys.numbered("loop-guard", i),
        stop=(
            f"Agent {agent.name!r} called {c.name} with the same arguments {len(tries)} times "
            f"({c.arguments[:200]}); its loop guard stopped the run. Improve its instructions "
            f"or tools, {fix}."
        ),
    )
    earlier = "\n".join(f"- attempt {k}: {t[:300]}" for k, t in enumerate(tries[:-1], 1))
    return (
        f"\n\n[loop guard] You have called {c.name} with these arguments {len(tries)} times. "
        f"Earlier results:\n{earlier}\nDo not repeat it: use what you have, try something "
        "different, or give your answer."
    )


async def _write_loop(
    ctx: RunContext[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    made: list[_Write],
    turns: int,
) -> str:
    earlier = [f"{w.arguments[:200]} -> {w.result[:200]}" for w in made]
    repeats = guard.write_repeats
    assert repeats is not None
    why = ""
    if guard.policy == "warn" and turns >= 2 * repeats:
        # Warned since its `write_repeats`-th turn and writing still: not left to go on.
        guard = replace(guard, policy="stop")
        why = f"though warned since its {_nth(repeats)}, "
    await _react(
        ctx,
        guard,
        kind="write",
        subject=c.name,
        times=turns,
        question={
            "agent": agent.name,
            "tool": c.name,
            "arguments": c.arguments,
            "earlier": list(earlier),
        },
        name=keys.numbered("write-guard", i),
        stop=(
            f"Agent {agent.name!r} was about to call write tool {c.name} in a {_nth(turns)} "
            f"turn, {why}with arguments {c.arguments[:200]} (earlier: "
            f"{'; '.join(earlier)[:400]}); its loop guard stopped the run before the call. "
            "Check what it did, then improve its instructions, limit the tool with "
            "@tool(max_calls=...), or raise LoopGuard(write_repeats=...)."
        ),
    )
    return (
        f"\n\n[loop guard] You have now called {c.name} in {turns} turns, and each call "
        "changes things outside (it is a write). Earlier calls and their results:\n"
        + "\n".join(f"- {e}" for e in earlier)
        + f"\nDo not call {c.name} again unless the task asks for one more, different change: "
        "never to redo or adjust a change already made. If the task is done, give your answer."
    )


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def _circling_delegation(
    ctx: RunContext[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    role: Delegate,
    tasks: list[str],
    memory: _Memory,
) -> str:
    """React to worker `role.worker` giving the same result again (`tasks`: what it
    was asked each time, this one's last; as many as `guard.repeats` or more)."""
    worker = role.worker
    path = " -> ".join(memory.delegations[-2 * guard.repeats :])
    await _react(
        ctx,
        guard,
        kind="delegation",
        subject=worker,
        times=len(tasks),
        question={"agent": agent.name, "worker": worker, "delegations": path},
        name=keys.numbered("loop-guard", i),
        stop=(
            f"Agent {agent.name!r} got the same result from worker {worker!r} {len(tasks)} "
            f"times (delegations: {path}); its loop guard stopped the run. Tell the manager "
            "when to stop delegating, or use LoopGuard(policy='warn')."
        ),
    )
    asked = "\n".join(f"- {task[:300]}" for task in tasks[:-1])
    return (
        f"\n\n[loop guard] {worker} has now given this same result {len(tasks)} times, "
        f"for these earlier tasks:\n{asked}\nYour delegations ({path}) are going in circles: "
        "asking again will not change it. Use what you have, try another worker, or answer."
    )
