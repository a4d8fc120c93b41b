"""`@workflow`: a custom flow written as `async def f(ctx, input)`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeAlias, overload

from typing_extensions import TypeVar

from orchestrion.context import RunContext
from orchestrion.patterns._names import check_name

OutputT = TypeVar("OutputT", covariant=True, default=Any)
"""What the function returns: the workflow's output."""
T = TypeVar("T")

WorkflowFunction: TypeAlias = Callable[[RunContext[Any], Any], Coroutine[Any, Any, OutputT]]
"""`async def f(ctx, input) -> Output`: `ctx` of any deps and `input` of any type, as
`Workflow.invoke` says why."""


@dataclass(frozen=True, kw_only=True, eq=False)
class FunctionWorkflow(Generic[OutputT]):
    """A workflow from a function. Everything it does through `ctx` (`ctx.run`,
    `ctx.gather`, `ctx.step`, `ctx.interrupt`, `ctx.now`, `ctx.random`, `ctx.uuid`)
    is journaled; the rest must be deterministic, as it runs again on replay.
    Its output is what the function returns (`FunctionWorkflow[Report]`)."""

    name: str
    function: WorkflowFunction[OutputT]
    description: str = ""

    def __post_init__(self) -> None:
        check_name("Workflow", self.name)

    def invoke(self, ctx: RunContext[Any], input: Any) -> Coroutine[Any, Any, OutputT]:
        return self.function(ctx, input)  # no coroutine of its own: fan-outs make thousands


class WorkflowDecorator(Protocol):
    """What `@workflow(name=...)` returns: it makes the `FunctionWorkflow`."""

    def __call__(self, function: WorkflowFunction[T], /) -> FunctionWorkflow[T]: ...


@overload
def workflow(function: WorkflowFunction[T], /) -> FunctionWorkflow[T]: ...


@overload
def workflow(*, name: str = "", description: str = "") -> WorkflowDecorator: ...


def workflow(
    function: WorkflowFunction[Any] | None = None, /, *, name: str = "", description: str = ""
) -> FunctionWorkflow[Any] | WorkflowDecorator:
    """`@workflow` or `@workflow(name=...)` on `async def f(ctx, input) -> Output`."""

    def wrap(fn: WorkflowFunction[T]) -> FunctionWorkflow[T]:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0]
        return FunctionWorkflow(
            name=name or fn.__name__, function=fn, description=description or doc
        )

    return wrap(function) if function is not None else wrap
