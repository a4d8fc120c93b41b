"""`GroupChat`: participants share one transcript; a policy picks who speaks next."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrion import keys
from orchestrion._json import JSON, dumps_str
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import UnknownSpeaker as UnknownSpeaker  # where users found it
from orchestrion.errors import UserError
from orchestrion.guards import LoopGuard
from orchestrion.loops import ChatTurn, LoopWatch
from orchestrion.patterns._names import check_name
from orchestrion.patterns.shape import Link, Shape
from orchestrion.patterns.termination import ChatState, Condition, MaxTurns

SpeakerPolicy = (
    Literal["round_robin"] | Agent[Any, Any] | Callable[[ChatState, tuple[str, ...]], str]
)


@dataclass(frozen=True, kw_only=True, eq=False)
class GroupChat:
    """Each turn, one participant reads the whole transcript and speaks.

    `speaker` picks who: `"round_robin"`, a selector agent (it reads the
    transcript and answers with a participant's name), or a function
    `(state, names) -> name`. The chat ends when `termination` gives a reason;
    the output is `{"transcript": [[speaker, text], ...], "stopped": reason}`.
    """

    name: str
    participants: Sequence[Agent[Any, Any]]
    """Of any deps and outputs: each runs with the run's deps, and what it says is
    read as text (JSON text for a typed output)."""
    speaker: SpeakerPolicy = "round_robin"
    termination: Condition = field(default_factory=lambda: MaxTurns(10))
    loop_guard: LoopGuard | None = field(default_factory=lambda: LoopGuard(repeats=2))
    """Acts when a participant says, word for word, what it said before (`repeats`
    times): `warn` tells the next speaker, `stop` ends the run, `ask` asks a human."""
    description: str = ""

    def __post_init__(self) -> None:
        check_name("GroupChat", self.name)
        names = [p.name for p in self.participants]
        if not names or len(set(names)) != len(names):
            raise UserError(
                f"GroupChat {self.name!r} needs participants with distinct names, got {names}."
            )
        if not (
            self.speaker == "round_robin"
            or isinstance(self.speaker, Agent)
            or callable(self.speaker)
        ):
            raise UserError(
                f"GroupChat {self.name!r}: speaker must be 'round_robin', a selector Agent or a "
                f"function (state, names) -> name, not {self.speaker!r}."
            )
        if not isinstance(self.termination, Condition):
            raise UserError(
                f"GroupChat {self.name!r}: termination must be a Condition (e.g. MaxTurns(10))."
            )

    async def invoke(self, ctx: RunContext[Any], input: Any) -> dict[str, JSON]:
        by_name = {p.name: p for p in self.participants}
        names = tuple(by_name)
        transcript: list[tuple[str, str]] = [("user", _text(input))]
        watch = LoopWatch(self.loop_guard)
        note = ""
        started = await ctx.step(keys.numbered("clock", 0), _clock)
        for turn in range(1, 10_000):
            now = await ctx.step(keys.numbered("clock", turn), _clock) if turn > 1 else started
            state = ChatState(tuple(transcript), ctx.usage, now - started)
            reason = self.termination.check(state)
            if reason:
                return {"transcript": [list(t) for t in transcript], "stopped": reason}
            speaker = await self._next(ctx, state, names, turn)
            prompt = _render(transcript, speaker) + note
            said = _text(await ctx.run(by_name[speaker], prompt, key=keys.numbered("turn", turn)))
            transcript.append((speaker, said))
            seen = ChatTurn(chat=self.name, speaker=speaker, said=said, turn=turn)
            note = await watch.check(ctx, seen)
        raise UserError(f"GroupChat {self.name!r} never terminated: give it a MaxTurns condition.")

    def shape(self) -> Shape:
        """Round robin passes the turn around the circle; a selector agent picks each
        speaker, and reads the chat after each turn; with a function, any participant
        may speak first, and after any other."""
        people = range(len(self.participants))
        output = [Link(p, None, "output") for p in people]
        if isinstance(self.speaker, Agent):
            at = len(self.participants)
            picks = [Link(None, at, "input"), *(Link(at, p, "selects") for p in people)]
            reads = [Link(p, at, "speaks after") for p in people]
            return Shape((*self.participants, self.speaker), (*picks, *reads, *output))
        if self.speaker == "round_robin":
            n = len(people)
            turns = [Link(p, (p + 1) % n, "speaks after") for p in people] if n > 1 else []
            return Shape(tuple(self.participants), (Link(None, 0, "input"), *turns, *output))
        firsts = [Link(None, p, "input") for p in people]
        turns = [Link(p, q, "speaks after") for p in people for q in people if p != q]
        return Shape(tuple(self.participants), (*firsts, *turns, *output))

    async def _next(
        self, ctx: RunContext[Any], state: ChatState, names: tuple[str, ...], turn: int
    ) -> str:
        if self.speaker == "round_robin":
            return names[(turn - 1) % len(names)]
        if isinstance(self.speaker, Agent):
            prompt = (
                f"{_render(list(state.transcript), '')}\n\nWho should speak next? Answer with exactly "
                f"one of: {', '.join(names)}."
            )
            choice = str(
                await ctx.run(self.speaker, prompt, key=keys.numbered("select", turn))
            ).strip()
        else:
            choice = self.speaker(state, names)
        if choice not in names:
            raise UnknownSpeaker(
                f"GroupChat {self.name!r}: the speaker policy chose {choice!r}, not one of {list(names)}."
            )
        return choice


async def _clock() -> float:
    return time.time()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dumps_str(value)


def _render(transcript: list[tuple[str, str]], speaker: str) -> str:
    lines = "\n\n".join(f"[{who}]\n{text}" for who, text in transcript)
    return f"{lines}\n\nYou are {speaker}. Continue the conversation." if speaker else lines
