"""Running any runnable at a scope: the one place that knows agents from workflows."""

from __future__ import annotations

from typing import Any

from orchestrion._json import JSON
from orchestrion.agent import Agent
from orchestrion.engine.agent_loop import run_agent
from orchestrion.engine.execution import Context, Execution
from orchestrion.runnable import Runnable


async def run_child(ex: Execution, scope: str, runnable: Runnable, input: JSON) -> Any:
    """Run `runnable` with its steps keyed under `<scope>/<its name>` (or its bare
    name at the root of a run)."""
    key = f"{scope}/{runnable.name}" if scope else runnable.name
    if isinstance(runnable, Agent):
        output = await run_agent(ex, key, runnable, input)
    else:
        output = await runnable.invoke(Context(ex, key), input)
    if scope:  # a member, not the run itself: a run stopped at a limit returns these
        ex.outputs[key] = output
    return output
