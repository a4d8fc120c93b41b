"""`@workflow`: a custom flow written as `async def f(ctx, input)`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, overload

from orchestrion._json import JSON
from orchestrion.context import RunContext
from orchestrion.patterns._names import check_name

WorkflowFunction = Callable[[RunContext[Any], Any], Coroutine[Any, Any, Any]]


@dataclass(frozen=True, kw_only=True, eq=False)
class FunctionWorkflow:
    """A workflow from a function. Everything it does through `ctx` (`ctx.run`,
    `ctx.gather`, `ctx.step`, `ctx.interrupt`, `ctx.now`, `ctx.random`, `ctx.uuid`)
    is journaled; the rest must be deterministic, as it runs again on replay."""

    name: str
    function: WorkflowFunction
    description: str = ""

    def __post_init__(self) -> None:
        check_name("Workflow", self.name)

    def invoke(self, ctx: RunContext[Any], input: JSON) -> Coroutine[Any, Any, Any]:
        return self.function(ctx, input)  # no coroutine of its own: fan-outs make thousands


@overload
def workflow(function: WorkflowFunction, /) -> FunctionWorkflow: ...


@overload
def workflow(
    *, name: str = "", description: str = ""
) -> Callable[[WorkflowFunction], FunctionWorkflow]: ...


def workflow(
    function: WorkflowFunction | None = None, /, *, name: str = "", description: str = ""
) -> FunctionWorkflow | Callable[[WorkflowFunction], FunctionWorkflow]:
    """`@workflow` or `@workflow(name=...)` on `async def f(ctx, input)`."""

    def wrap(fn: WorkflowFunction) -> FunctionWorkflow:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0]
        return FunctionWorkflow(
            name=name or fn.__name__, function=fn, description=description or doc
        )

    return wrap(function) if function is not None else wrap
