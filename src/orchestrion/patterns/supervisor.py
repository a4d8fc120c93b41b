"""`Supervisor`: a manager agent decomposes the task and delegates to workers.

Each worker is a tool of the manager (`delegate_to_<worker>`); a delegation is
a tool step that runs the worker as a child, so several delegations in one
turn run at once, a worker's interrupts suspend the whole run, and a finished
delegation is never run again. A failed worker is reported to the manager,
which can re-plan. A supervisor can be a worker of another one: that is the
hierarchical pattern.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from orchestrion import keys
from orchestrion._json import dumps_str
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.errors import MaxTurnsExceeded, RunError, RunHalted, UserError
from orchestrion.patterns._names import check_members, check_name
from orchestrion.patterns.shape import Link, Shape
from orchestrion.runnable import Runnable
from orchestrion.tools.roles import Delegate
from orchestrion.tools.tool import ModelRetry, Tool

DELEGATE = "delegate_to_"
"""Begins the model-visible name of each delegation tool (role `Delegate`)."""
OutputT = TypeVar("OutputT", covariant=True, default=Any)


@dataclass(frozen=True, kw_only=True, eq=False)
class Supervisor(Generic[OutputT]):
    """A manager agent with workers; its output is the manager's final answer (a
    `Supervisor[Plan]` for a manager whose `output_type` is `Plan`)."""

    name: str
    manager: Agent[Any, OutputT]
    workers: Sequence[Runnable]
    max_rounds: int = 10
    """Model turns the manager may take (its `max_turns`)."""
    max_depth: int = 3
    """This supervisor delegates only while it sits fewer than `max_depth` delegations
    deep in the run (0 = it is at the top), which bounds runaway recursion in hierarchies."""
    description: str = ""
    _manager: Agent[Any, OutputT] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_name("Supervisor", self.name)
        workers = check_members("Supervisor", self.name, self.workers, "workers")
        if self.max_rounds < 1 or self.max_depth < 0:
            raise UserError(
                f"Supervisor {self.name!r}: max_rounds must be >= 1 and max_depth >= 0 "
                f"(got {self.max_rounds} and {self.max_depth})."
            )
        tools = [self._delegation(worker) for worker in workers]
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise UserError(f"Supervisor {self.name!r}: two workers share a name: {names}.")
        manager = dataclasses.replace(
            self.manager,
            tools=[*self.manager.tools, *tools],
            max_turns=self.max_rounds,
            instructions=self.manager.instructions or _default_instructions(workers),
        )
        object.__setattr__(self, "_manager", manager)

    async def invoke(self, ctx: RunContext[Any], input: Any) -> OutputT:
        try:
            return await ctx.run(self._manager, input)
        except MaxTurnsExceeded as exc:
            raise MaxTurnsExceeded(
                f"Supervisor {self.name!r}: its manager used all max_rounds={self.max_rounds} "
                "rounds without a final answer. Raise Supervisor(max_rounds=...) or tell the "
                "manager when to stop delegating."
            ) from exc

    def shape(self) -> Shape:
        workers = range(1, len(self.workers) + 1)
        links = (Link(None, 0, "input"), *(Link(0, w, "delegates") for w in workers))
        return Shape((self.manager, *self.workers), (*links, Link(0, None, "output")))

    def _delegation(self, worker: Runnable) -> Tool:
        max_depth = self.max_depth

        async def delegate(ctx: RunContext[Any], task: str) -> str:
            # Counted exactly only when the quick upper bound (this call included) is
            # past the limit: most teams sit one level deep.
            if (
                keys.calls_at_most(ctx.key, DELEGATE) > max_depth
                and (depth := _delegations_above(ctx.key)) >= max_depth
            ):
                raise ModelRetry(
                    f"This team sits {depth} delegations deep and max_depth={max_depth}: do not "
                    "delegate; do the task yourself or answer with what you have."
                )
            try:
                output = await ctx.run(worker, task)
            except RunHalted:
                raise  # the whole run ends (a limit, an uncertain write), not this worker
            except RunError as exc:
                raise ModelRetry(
                    f"Worker {worker.name!r} failed: {type(exc).__name__}: {exc}. "
                    "Re-plan: try another worker, rephrase the task, or answer without it."
                ) from exc
            return output if isinstance(output, str) else dumps_str(output)

        description = getattr(worker, "description", "") or f"Delegate a task to {worker.name}."
        return Tool(
            function=delegate,
            name=DELEGATE + re.sub(r"[^A-Za-z0-9_-]", "_", worker.name),
            description=f"{description}\n\nArgs:\n    task: What the worker should do, self-contained.",
            role=Delegate(worker=worker.name),
        )


def _delegations_above(key: str) -> int:
    """How many delegations the delegation at `key` (its tool call) sits under."""
    above = -1  # the delegation itself is one of them
    for tool in keys.tools_above(key):
        if tool.startswith(DELEGATE):
            above += 1
    return above


def _default_instructions(workers: tuple[Runnable, ...]) -> str:
    roster = "\n".join(
        f"- {DELEGATE}{w.name}: {getattr(w, 'description', '') or w.name}" for w in workers
    )
    return (
        "You manage a team. Break the task into steps, delegate each step to the right "
        "worker (several at once when they are independent), check their results, and "
        f"give the final answer yourself.\nWorkers:\n{roster}"
    )
