"""What runs log (`engine.logs`): records under `orchestrion.run` carrying the run,
the step and the agent; warnings even when INFO is off; nothing again on replay."""

from __future__ import annotations

import logging

import pytest

from orchestrion import Agent, RunStatus, Runtime, tool
from orchestrion.testing import TestModel


@tool
def broken(x: int) -> str:
    """Breaks."""
    raise RuntimeError("disk full")


async def test_a_failed_step_is_a_warning_even_with_info_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrion")
    async with Runtime("memory://") as runtime:
        result = await runtime.run(Agent(name="a", model=TestModel(), tools=[broken]), "go")
    assert result.status is RunStatus.FAILED
    records = [r for r in caplog.records if r.name == "orchestrion.run"]
    assert records and all(r.levelno >= logging.WARNING for r in records)
    step = next(r for r in records if "failed: ToolError" in r.getMessage())
    assert (step.run_id, step.agent) == (result.run_id, "a")  # type: ignore[attr-defined]
    assert step.step_key == "a/turn-1/tool/broken#call_1_0"  # type: ignore[attr-defined]
    assert records[-1].getMessage().startswith(f"run {result.run_id} failed: ToolError")


async def test_info_tells_a_runs_start_and_end_and_debug_each_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrion")

    @tool
    def fine(x: int) -> str:
        """Works."""
        return "ok"

    async with Runtime("memory://") as runtime:
        result = await runtime.run(Agent(name="a", model=TestModel(), tools=[fine]), "go")
    messages = [r.getMessage() for r in caplog.records if r.name == "orchestrion.run"]
    assert messages[0] == f"run {result.run_id} started (a)"
    assert messages[-1].startswith(f"run {result.run_id} completed (")
    steps = [m for m in messages if " step " in m and " done in " in m]
    assert [m.split(" done")[0] for m in steps] == [
        "model step a/turn-1/model",
        "tool step a/turn-1/tool/fine#call_1_0",
        "model step a/turn-2/model",
    ]


async def test_nothing_is_logged_when_logging_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="orchestrion")
    async with Runtime("memory://") as runtime:
        await runtime.run(Agent(name="a", model=TestModel(), tools=[broken]), "go")
    assert [r for r in caplog.records if r.name == "orchestrion.run"] == []
