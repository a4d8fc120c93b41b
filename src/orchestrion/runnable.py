"""`Runnable`: what a Runtime can run. An `Agent`, or a `Workflow`: any object
with a name and an async `invoke(ctx, input)` (patterns and custom flows)."""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

from orchestrion._json import JSON
from orchestrion.agent import Agent
from orchestrion.context import RunContext


@runtime_checkable
class Workflow(Protocol):
    @property
    def name(self) -> str:
        """Unique within a team; the root of its step keys."""
        ...

    async def invoke(self, ctx: RunContext[Any], input: JSON) -> Any:
        """Orchestrate: every step goes through `ctx`, so it is journaled and replayed."""
        ...


Runnable: TypeAlias = Agent[Any] | Workflow
