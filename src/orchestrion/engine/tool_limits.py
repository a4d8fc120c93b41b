"""Each tool's `max_calls`: how often a tool ran in this run.

A tool call is the step `<turn>/tool/<name>#<call id>` (see `orchestrion.keys`).
A call counts from the moment the engine lets it run, unless
it ends with an error result: the engine's refusals (an unknown tool, invalid
arguments, a rejected approval, this limit) and the tool's own `ModelRetry`
all ask the model to try again, so they use no place. A call that raised, or a
write cut off mid-call, counts: its effect may have happened. The count is
rebuilt from the journal, so a resume or a fork goes on where the run was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from orchestrion import keys
from orchestrion.engine.journal import Entry
from orchestrion.engine.records import (
    Answered,
    AttemptFailed,
    ClockRead,
    GaveUp,
    InterruptAsked,
    ModelResponded,
    RandomSeed,
    StepRaised,
    StepReturned,
    ToolReturned,
    UuidMade,
    WriteStarted,
    decode,
)
from orchestrion.tools.tool import Tool


def _counts(entry: Entry) -> bool:
    if entry.kind != "tool":
        return False
    match decode(entry):
        case ToolReturned(is_error=is_error):
            return not is_error
        case WriteStarted() | AttemptFailed() | StepRaised():
            return True  # a write cut off mid-call; a call that raised, or waits for a retry
        case (
            ModelResponded()
            | InterruptAsked()
            | Answered()
            | StepReturned()
            | ClockRead()
            | RandomSeed()
            | UuidMade()
            | GaveUp()
        ):
            return False  # not the records of a tool call
        case unknown:
            assert_never(unknown)


class ToolRuns:
    """The keys of the calls of each tool that count or hold a place to run, by tool
    name: counted from the journal `replay` when a limited tool is first called."""

    __slots__ = ("_keys", "_replay")

    def __init__(self, replay: Mapping[str, Entry]) -> None:
        self._replay = replay
        self._keys: dict[str, set[str]] | None = None

    def _counted(self) -> dict[str, set[str]]:
        counted: dict[str, set[str]] = {}
        for key, entry in self._replay.items():
            name = keys.tool_of(key)
            if name is not None and _counts(entry):
                counted.setdefault(name, set()).add(key)
        return counted

    def take(self, tool: Tool, key: str) -> str | None:
        """Hold a place for the call of `tool` at `key` (a call resumed keeps its
        own); None if it may run, else what to tell the model. Synchronous, so two
        calls made at once cannot both take the last place."""
        limit = tool.max_calls
        if limit is None:
            return None
        if self._keys is None:
            self._keys = self._counted()
        held = self._keys.setdefault(tool.name, set())
        if key in held or len(held) < limit:
            held.add(key)
            return None
        times = "once" if limit == 1 else f"{limit} times"
        return (
            f"Tool {tool.name!r} was not run: it may run only {times} per run "
            f"(max_calls={limit}), and it already has. Do not call it again: use the "
            "results you have, or give your answer."
        )

    def give_back(self, tool: Tool, key: str) -> None:
        """The call at `key` does not count after all (rejected, or it asked to be retried)."""
        if self._keys is not None and tool.name in self._keys:
            self._keys[tool.name].discard(key)
