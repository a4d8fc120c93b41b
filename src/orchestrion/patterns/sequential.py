"""`Sequential`: a pipeline; each member's output becomes the next one's input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from typing_extensions import TypeVar

from orchestrion import keys
from orchestrion._json import JSON, dumps_str, to_jsonable
from orchestrion.context import RunContext
from orchestrion.errors import UserError
from orchestrion.patterns._names import check_members, check_name
from orchestrion.patterns.shape import Shape, chain
from orchestrion.runnable import Runnable

Outputs = list[tuple[str, JSON]]
"""(member name, output as JSON) for each member that ran, in order."""
ContextPolicy = Literal["last", "transcript"] | Callable[[JSON, Outputs], JSON]
OutputT = TypeVar("OutputT", covariant=True, default=Any)


@dataclass(frozen=True, kw_only=True, eq=False)
class Sequential(Generic[OutputT]):
    """Run `members` one after another.

    `context` decides what each member receives: `"last"` the previous output
    (the first member gets the run's input), `"transcript"` the task and every
    output so far as text, or a function `(input, outputs) -> member input`.

    Its output is the last member's: exactly its type when `members` is a tuple;
    from a list a type checker can only tell what the members' outputs have in
    common (mypy: their join, pyright: their union).
    """

    name: str
    members: Sequence[Runnable]
    context: ContextPolicy = "last"
    description: str = ""
    _members: tuple[Runnable, ...] = field(init=False, repr=False)

    if TYPE_CHECKING:  # for type checkers only: the dataclass writes the real `__init__`

        @overload
        def __init__(
            self,
            *,
            name: str,
            members: tuple[*tuple[Runnable, ...], Runnable[OutputT]],
            context: ContextPolicy = "last",
            description: str = "",
        ) -> None: ...

        @overload
        def __init__(
            self,
            *,
            name: str,
            members: Sequence[Runnable[OutputT]],
            context: ContextPolicy = "last",
            description: str = "",
        ) -> None: ...

        def __init__(self, **kwargs: Any) -> None: ...

    def __post_init__(self) -> None:
        check_name("Sequential", self.name)
        members = check_members("Sequential", self.name, self.members, "members")
        if not (callable(self.context) or self.context in ("last", "transcript")):
            raise UserError(
                f"Sequential {self.name!r}: context must be 'last', 'transcript' or a "
                f"function (input, outputs) -> input, not {self.context!r}."
            )
        object.__setattr__(self, "_members", members)

    async def invoke(self, ctx: RunContext[Any], input: Any) -> OutputT:
        outputs: Outputs = []
        output: Any = input
        for i, member in enumerate(self._members):
            output = await ctx.run(
                member, self._input_for(input, outputs), key=keys.numbered("step", i)
            )
            outputs.append((member.name, to_jsonable(output)))
        last: OutputT = output  # the last member's output, as `__init__`'s overloads type it
        return last

    def shape(self) -> Shape:
        return chain(self._members, "next")

    def _input_for(self, task: JSON, outputs: Outputs) -> JSON:
        if callable(self.context):
            return self.context(task, list(outputs))  # a snapshot: later steps append
        if not outputs:
            return task
        if self.context == "last":
            return outputs[-1][1]
        parts = [f"Task: {_text(task)}"] + [f"[{name}]\n{_text(out)}" for name, out in outputs]
        return "\n\n".join(parts)


def _text(value: JSON) -> str:
    return value if isinstance(value, str) else dumps_str(value)
