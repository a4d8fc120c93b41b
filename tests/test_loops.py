"""The loop guard's logic lives in `orchestrion.loops`, behind `LoopWatch`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from orchestrion import Agent, LoopGuard, tool
from orchestrion.loops import ChatTurn, Hop, LoopWatch, MailRound, Sighting, WriteAhead
from orchestrion.messages import ToolResult
from orchestrion.testing import call

SRC = Path(__file__).resolve().parents[1] / "src" / "orchestrion"


class NoContext:
    """A run context that fails the test if the watch touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the watch used ctx.{name}")


@tool(effect="write")
def pay(n: int) -> str:
    return "paid"


AGENT = Agent(name="a", tools=[pay])
CALLS = (call("pay", {"n": 1}),)
SIGHTINGS: list[Sighting] = [
    WriteAhead(agent=AGENT, calls=CALLS, index=0),
    Hop(handoff="h", source="x", target="y", hop=0),
    ChatTurn(chat="c", speaker="x", said="same", turn=1),
    MailRound(network="n", mail=(("x", "y", "hi"),), round=1),
]


@pytest.mark.parametrize("seen", SIGHTINGS, ids=lambda s: type(s).__name__)
async def test_without_a_guard_the_watch_never_acts(seen: Sighting) -> None:
    watch = LoopWatch(None)
    for _ in range(10):
        assert await watch.check(NoContext(), seen) == ""  # type: ignore[arg-type]


async def test_without_a_guard_an_agents_results_pass_as_they_are() -> None:
    watch = LoopWatch(None)
    results = [ToolResult("c", "pay", "paid", False)]
    for _ in range(10):
        assert await watch.calls_done(NoContext(), AGENT, CALLS, results) is results  # type: ignore[arg-type]


@pytest.mark.parametrize("seen", SIGHTINGS[1:], ids=lambda s: type(s).__name__)
async def test_a_first_sighting_is_no_loop(seen: Sighting) -> None:
    assert await LoopWatch(LoopGuard(repeats=2)).check(NoContext(), seen) == ""  # type: ignore[arg-type]


ACTING = re.compile(r"\bLoopDetected\(|\.loop_detected\(|\[loop guard\]")
"""Acting on a loop: stopping the run, reporting it, or writing the note that warns."""


def _acting(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root)}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        # The demos' stand-in models read the notes, as a model would.
        if path.name != "loops.py" and "demos" not in path.parts
        for line in path.read_text().splitlines()
        if ACTING.search(line) and not line.lstrip().startswith(("def ", "class "))
    ]


def test_only_the_loops_module_acts_on_loops() -> None:
    assert _acting(SRC) == []
