"""`Runnable`: what a Runtime can run. An `Agent`, or a `Workflow`: any object
with a name and an async `invoke(ctx, input)` (patterns and custom flows)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypeAlias, runtime_checkable

from typing_extensions import TypeVar

from orchestrion.agent import Agent
from orchestrion.context import RunContext

OutputT_co = TypeVar("OutputT_co", covariant=True, default=Any)
"""What a workflow's `invoke` returns; a bare `Workflow` is one of any output."""
OutputT = TypeVar("OutputT", default=Any)


@runtime_checkable
class Workflow(Protocol[OutputT_co]):
    """A pattern or a custom flow: a name and an async `invoke(ctx, input)`.

    Generic in what `invoke` returns, which is the output of a run of it. `ctx`
    is a `RunContext[Any]` and `input` is `Any` on purpose: a workflow runs with
    whatever deps the run was given (they are checked only for agents run
    directly), and its input is JSON data, or what a parent pattern passes (a
    `Handoff` hands an agent the conversation so far), so an implementation may
    declare the input it expects."""

    @property
    def name(self) -> str:
        """Unique within a team; the root of its step keys."""
        ...

    def invoke(self, ctx: RunContext[Any], input: Any) -> Awaitable[OutputT_co]:
        """Orchestrate: every step goes through `ctx`, so it is journaled and replayed.
        (An `async def invoke` fits, and so does a `def` returning a coroutine.)"""
        ...


Runnable: TypeAlias = Agent[Any, OutputT] | Workflow[OutputT]
"""An agent or a workflow whose runs return an `OutputT` (any output when bare).
Its deps are `Any` here: `Runtime.run` checks an agent's deps where it takes one."""
