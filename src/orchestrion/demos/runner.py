"""What every `examples/*.py` script does: run a demo offline, approve what waits
for a human, print the steps and the outcome."""

from __future__ import annotations

from typing import Any

from orchestrion._json import JSON
from orchestrion.engine.interrupts import Approve
from orchestrion.engine.result import RunResult
from orchestrion.engine.runtime import Runtime
from orchestrion.runnable import Runnable


async def run_approving(
    runtime: Runtime, runnable: Runnable, task: JSON, deps: Any = None
) -> RunResult[Any]:
    """Run, approving every interrupt (a demo has no human at hand) until the run ends."""
    result = await runtime.run(runnable, task, deps=deps)
    while result.interrupts:
        for interrupt in result.interrupts:
            print(f"auto-approving {interrupt.payload}")
        answers = {interrupt.id: Approve() for interrupt in result.interrupts}
        result = await runtime.resume(result.run_id, answers, deps=deps)
    return result


async def run_example(runnable: Runnable, task: JSON, deps: Any = None) -> RunResult[Any]:
    """`run_approving` on an in-memory store, then print each step and the output."""
    async with Runtime("memory://") as runtime:
        result = await run_approving(runtime, runnable, task, deps)
        for step in await runtime.history(result.run_id):
            print(f"  {step.status.value:9} {step.key}")
        print(result.output)
        return result
