"""Step keys: where a step sits in the orchestration, built and parsed here only.

A key is a path of segments joined by `/`, derived from structure, not timing,
so a replay asks for the same keys in any order (see DESIGN.md):

    supervisor/turn-2/model                           a model request (turn 2 of an agent)
    supervisor/turn-2/tool/get_balance#call_7f        a tool call (`~N` if its key repeats)
    supervisor/turn-2/tool/pay#c1/approval            the approval of that call
    supervisor/turn-1/tool/delegate_to_w#d/w/...      a member run under a tool call
    fanout/branch-3/analyst/turn-1/model              a member under a `ctx.run(key=...)` scope
    wf/approval   wf/interrupt-1   wf/now-2           custom steps, interrupts, clock reads
    wf/step-0/parse/                                  the claim of a `ctx.run`: a marker, not a step
    team/billing/gave-up   team/billing/fallback/b    an agent's fallback chain

Keys are journaled, so their format is a stored format: every builder here
produces exactly the bytes earlier versions wrote. Every other module builds
keys with these functions and reads them through `parse` and the relations
below (`parent`, `is_below`, ...); a test checks that no one else splits or
joins them by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

SEP = "/"
"""Between the segments of a key."""

_MARK = SEP
"""What ends a scope marker (`<member key>/`)."""
_CALL = "#"
"""Between a tool's name and its call id in a tool call's segment."""
_REPEAT = "~"
"""Before the position of a tool call whose key repeats one of its response."""
_TOOL = "tool"
_MODEL = "model"
_APPROVAL = "approval"
_SUBMIT = "submit"
"""The stem of the steps that queue separate runs (`ctx.submit`)."""
_TURN = re.compile(r"turn-(\d+)")
_NUMBERED = re.compile(r"([a-z]+(?:-[a-z]+)*)-(\d+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
"""Model-chosen text kept out of keys: it would add segments, or fake a call id."""
_SHORT = 6
"""Segments of a key shown whole in a message; longer keys keep their ends."""


class Call(Protocol):
    """A tool call as its key needs it (`orchestrion.messages.ToolCall` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


# -- building ----------------------------------------------------------------


def child(scope: str, name: str) -> str:
    """The key of `name` inside `scope`; just `name` at the root of a run (scope "")."""
    return f"{scope}{SEP}{name}" if scope else name


def numbered(stem: str, n: int) -> str:
    """A segment for the `n`-th of a kind: `turn-2`, `branch-3`, `hop-0`, `now-1`."""
    return f"{stem}-{n}"


def numbered_of(segment: str) -> tuple[str, int] | None:
    """The stem and number of a `numbered` segment (`hop-2` -> `("hop", 2)`), else None."""
    found = _NUMBERED.fullmatch(segment)
    return None if found is None else (found.group(1), int(found.group(2)))


def submitted(name: str) -> str:
    """The segment of a `ctx.submit` named `name`: `submit-<name>`."""
    return f"{_SUBMIT}-{name}"


def turn_keys(scope: str, turn: int) -> tuple[str, str]:
    """The scope of the agent at `scope`'s turn `turn` (its tool calls lie under it),
    and the key of the turn's model request."""
    # Written out rather than `child(scope, numbered(...))`: both, at every turn.
    turn_scope = f"{scope}{SEP}turn-{turn}" if scope else f"turn-{turn}"
    return turn_scope, f"{turn_scope}{SEP}{_MODEL}"


def tool_key(turn: str, name: str, call_id: str, position: int) -> str:
    """The call of tool `name` with `call_id`, the `position`-th call of the turn at
    `turn`. Names and ids come from the model: anything outside [A-Za-z0-9_.-]
    becomes `_`, and a missing id is the call's position."""
    safe_id = _UNSAFE.sub("_", call_id) or str(position)
    segment = f"{_TOOL}{SEP}{_UNSAFE.sub('_', name)}{_CALL}{safe_id}"
    return f"{turn}{SEP}{segment}" if turn else segment


def tool_keys(turn: str, calls: Iterable[Call]) -> list[str]:
    """`tool_key` of each call of one model response; a key seen twice in it gets
    `~<position>`, so calls never share a step."""
    keys: list[str] = []
    for i, c in enumerate(calls):
        key = tool_key(turn, c.name, c.id, i)
        keys.append(f"{key}{_REPEAT}{i}" if key in keys else key)
    return keys


def approval_key(call: str) -> str:
    """The human's decision on the tool call at `call`."""
    return child(call, _APPROVAL)


def member_keys(scope: str, name: str) -> tuple[str, str]:
    """The key of member `name` run in `scope` (`child`), and the `scope_marker` its
    `ctx.run` claims: both, at every member run."""
    member = f"{scope}{SEP}{name}" if scope else name
    return member, member + _MARK


def scope_marker(member: str) -> str:
    """What a `ctx.run` of the member at `member` claims: not a step (nothing is
    journaled under it), but a second run of the member at the same key is caught."""
    return member + _MARK


def fallback_scope(primary: str) -> str:
    """Where the fallback agents of the agent at `primary` run."""
    return child(primary, "fallback")


def fallback_key(primary: str, agent: str) -> str:
    """The key of fallback agent `agent` of the agent at `primary`."""
    return child(fallback_scope(primary), agent)


def gave_up_key(agent: str) -> str:
    """The step recording that the agent at `agent` failed and its fallback took over."""
    return child(agent, "gave-up")


# -- parsing -----------------------------------------------------------------

KeyKind = Literal["model", "tool", "approval", "scope", "step"]
"""What a key names: a model request, a tool call, a tool call's approval, a
`ctx.run` scope marker, or any other step (custom, interrupt, clock, member...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One level of a key: a plain segment (a member, a scope, a step's name), or
    an agent's step with its turn (`turn-2/model`, `turn-2/tool/pay#c1`)."""

    text: str
    """This level as the key spells it (its segments joined by `/`)."""
    name: str
    """The level without its turn: `model`, `tool/pay#c1`, or the plain segment."""
    turn: int | None = None
    """The agent turn of a model request or a tool call."""
    tool: str | None = None
    """The tool name of a tool call."""
    call: str | None = None
    """What follows `#` in a tool call: its call id, and `~N` if its key repeated."""

    @property
    def call_id(self) -> str | None:
        """The call id of a tool call (as the key holds it: made safe, or its position)."""
        return None if self.call is None else self.call.partition(_REPEAT)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepKey:
    """A key read back into its levels."""

    key: str
    parts: tuple[Part, ...]
    marker: bool = False
    """A `ctx.run` scope marker (the key ends with `/`)."""

    @property
    def depth(self) -> int:
        """How many levels the key has (an agent's step is one level)."""
        return len(self.parts)

    @property
    def calls(self) -> tuple[Part, ...]:
        """The tool calls this key is, or lies under (e.g. delegations, outermost first)."""
        return tuple(p for p in self.parts if p.tool is not None)

    @property
    def kind(self) -> KeyKind:
        if self.marker:
            return "scope"
        last = self.parts[-1]
        if last.tool is not None:
            return "tool"
        if last.turn is not None and last.name == _MODEL:
            return "model"
        if last.text == _APPROVAL and len(self.parts) > 1 and self.parts[-2].tool is not None:
            return "approval"
        return "step"

    @property
    def step(self) -> Part | None:
        """The agent step (model request or tool call) this key is, or approves."""
        match self.kind:
            case "model" | "tool":
                return self.parts[-1]
            case "approval":
                return self.parts[-2]
            case "scope" | "step":
                return None

    @property
    def agent(self) -> str | None:
        """The agent whose step (model request, tool call, approval) this key is."""
        kind = self.kind
        if kind not in ("model", "tool", "approval"):
            return None
        at = len(self.parts) - (2 if kind == "approval" else 1)  # the step's own level
        return self.parts[at - 1].name if at else None

    @property
    def turn(self) -> int | None:
        step = self.step
        return None if step is None else step.turn

    @property
    def tool(self) -> str | None:
        step = self.step
        return None if step is None else step.tool

    @property
    def call_id(self) -> str | None:
        step = self.step
        return None if step is None else step.call_id


def parse(key: str) -> StepKey:
    """`key` as levels. A segment `turn-N` is an agent's turn when one segment
    follows it (`model`, or a live view's row) or a tool call `tool/<name>#<id>`
    does; otherwise it is a plain segment (GroupChat keys its speakers `turn-N`).
    Member names cannot hold `#`, so a member is never read as a tool call; a
    custom step or member *named* `turn-N` with one segment after it reads as an
    agent's turn (the CLI shows it so), which no builder here produces."""
    marker = key.endswith(_MARK)
    segments = (key[: -len(_MARK)] if marker else key).split(SEP)
    parts: list[Part] = []
    i = 0
    while i < len(segments):
        turn = _agent_turn(segments, i)
        if turn is None:
            parts.append(Part(text=segments[i], name=segments[i]))
            i += 1
            continue
        width = 3 if segments[i + 1] == _TOOL and i + 2 < len(segments) else 2
        name = SEP.join(segments[i + 1 : i + width])
        tool = call = None
        if width == 3:
            tool, _, call = segments[i + 2].partition(_CALL)
        text = SEP.join(segments[i : i + width])
        parts.append(Part(text=text, name=name, turn=turn, tool=tool, call=call))
        i += width
    return StepKey(key=key, parts=tuple(parts), marker=marker)


def calls_at_most(key: str, prefix: str) -> int:
    """At least as many as the tool calls `key` is or lies under whose names start with
    `prefix` (`tools_above` names them exactly), found in one pass over the text:
    when this is small enough, no parse is needed."""
    return key.count(f"{SEP}{_TOOL}{SEP}{prefix}")


def tools_above(key: str) -> list[str]:
    """The names of the tool calls `key` is or lies under, outermost first: what
    `parse(key).calls` names, found without building the parts (a supervisor asks it
    at every delegation)."""
    segments = key.split(SEP)
    names: list[str] = []
    i = 0
    while True:
        try:
            i = segments.index(_TOOL, i + 1, len(segments) - 1)  # the few `tool` segments only
        except ValueError:
            return names
        if _CALL in segments[i + 1] and _TURN.fullmatch(segments[i - 1]):
            names.append(segments[i + 1].partition(_CALL)[0])


def _agent_turn(segments: list[str], i: int) -> int | None:
    found = _TURN.fullmatch(segments[i])
    if found is None:
        return None
    rest = segments[i + 1 :]
    if len(rest) == 1 or (len(rest) >= 2 and rest[0] == _TOOL and _CALL in rest[1]):
        return int(found.group(1))
    return None


def join(parts: Iterable[Part], *, marker: bool = False) -> str:
    """The key of `parts` (the inverse of `parse`)."""
    key = SEP.join(p.text for p in parts)
    return scope_marker(key) if marker else key


def tool_of(key: str) -> str | None:
    """The tool name of a tool call's key, else None."""
    parsed = parse(key)
    return parsed.tool if parsed.kind == "tool" else None


# -- relations -----------------------------------------------------------------


def is_submit(key: str) -> bool:
    """Whether `key` is a step that queued a separate run (`ctx.submit`)."""
    return key.rpartition(SEP)[2].startswith(f"{_SUBMIT}-")


def is_scope_marker(key: str) -> bool:
    """Whether `key` is a `ctx.run` claim (`scope_marker`), which is not a step."""
    return key.endswith(_MARK)


def unmarked(key: str) -> str:
    """The member key a scope marker claims; any other key as it is."""
    return key.removesuffix(_MARK)


def parent(key: str) -> str | None:
    """The scope `key` sits in; None for a key at the root of a run."""
    cut = key.rfind(SEP)
    return key[:cut] if cut > 0 else None


def last(key: str) -> str:
    """The last segment of `key`: a step's own name (`pay` in `team/step/pay`)."""
    return key.rpartition(SEP)[2]


def ancestors(key: str) -> list[str]:
    """Every scope `key` sits in, outermost first."""
    return [key[:i] for i, c in enumerate(key) if c == SEP]


def is_below(key: str, scope: str) -> bool:
    """Whether `key` lies inside `scope` (at any depth), not `scope` itself."""
    return key.startswith(scope + SEP)


def is_within(key: str, scope: str) -> bool:
    """Whether `key` is `scope` or lies inside it."""
    return key == scope or is_below(key, scope)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Every key below a scope, as bounds in code point order: `start <= key < stop`."""

    start: str
    stop: str


def below(scope: str) -> KeyRange:
    """The keys strictly below `scope`, for a search in sorted keys."""
    # Those keys begin `<scope>/`; `0` is the code point right after `/`.
    return KeyRange(scope + SEP, scope + chr(ord(SEP) + 1))


@dataclass(frozen=True, slots=True)
class Shared:
    """A key cut after the scopes it shares with another key: `head + rest == key`."""

    head: str
    """The shared scopes, with the `/` after them; "" when there are none."""
    rest: str


def shared(key: str, other: str) -> Shared:
    """`key` cut after the leading scopes it has in common with `other` (never its
    last segment), so a list of keys can show its nesting."""
    segments, before = key.split(SEP), other.split(SEP)
    count = 0
    while count < min(len(segments), len(before)) - 1 and segments[count] == before[count]:
        count += 1
    if not count:
        return Shared("", key)
    return Shared(SEP.join(segments[:count]) + SEP, SEP.join(segments[count:]))


def shorten(key: str) -> str:
    """`key` for a message: a deep key keeps its first three and last two segments."""
    segments = key.split(SEP)
    if len(segments) <= _SHORT:
        return key
    return SEP.join([*segments[:3], "...", *segments[-2:]])
