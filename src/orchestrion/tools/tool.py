"""`Tool` and `@tool`: a typed Python function an agent can call.

Arguments are validated by a pydantic model built once from the signature;
the JSON schema the model sees comes from the same signature and the
docstring (Google, NumPy or reST style).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    Protocol,
    get_origin,
    get_type_hints,
    overload,
)

import docstring_parser
import pydantic
from pydantic.fields import FieldInfo
from typing_extensions import TypeVar

from orchestrion._json import JSON
from orchestrion.context import RunContext
from orchestrion.errors import UserError
from orchestrion.messages import ToolDefinition
from orchestrion.policy import Policy
from orchestrion.tools.roles import ROLES, ToolRole

Effect = Literal["read", "write"]
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI and Anthropic accept
Approval = bool | Callable[[dict[str, Any]], bool]
"""`True`, or a predicate of the validated arguments (a dict of any values: they are
whatever the function's parameters are typed as)."""

DepsT = TypeVar("DepsT", contravariant=True, default=object)
"""The deps a tool reads through its `RunContext`. Contravariant: a tool that reads
a `Bank` fits an agent whose deps are a `Bank` (or a subclass). A tool that reads
none is a `Tool[Any]`: it fits an agent of any deps, and mypy, which joins list
items invariantly, can then join it with tools that read some (a `Tool[object]`
would make mypy reject `tools=[get_balance, today]`)."""
D = TypeVar("D")


class ModelRetry(Exception):
    """Raise inside a tool to send `message` to the model and let it try again."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Tool(Generic[DepsT]):
    """A function exposed to a model. Build one with `@tool` or `Tool(function=...)`.

    Typed by the deps it reads: a function whose first parameter is a
    `RunContext[Bank]` makes a `Tool[Bank]`, which only an `Agent` whose deps are a
    `Bank` may take; a function without a context makes a `Tool[Any]` (see `DepsT`)."""

    function: Callable[..., Any]
    """Any signature: its parameters become the tool's JSON schema, and what it
    returns is journaled as JSON."""
    name: str = ""
    """Defaults to the function's name."""
    description: str = ""
    """Defaults to the function's docstring."""
    effect: Effect = "read"
    """`write` tools journal *started* before and *completed* after the call, so a
    crash between the two re-executes them with the same idempotency key."""
    approval: Approval = False
    """`True`, or a predicate of the validated arguments: a human must approve first."""
    timeout: float | None = None
    """Seconds before the call is abandoned (short for `policy=Policy(timeout=...)`)."""
    policy: Policy | None = None
    """Timeout, retry and breaker for this tool's calls; unset fields come from the
    agent's and the runtime's policies, except that a write tool is retried only
    when its own policy says so (each attempt keeps the idempotency key)."""
    max_calls: int | None = None
    """How many times the tool may run in one run, over every agent that has it
    (counted from the journal, so a resume does not reset it). A call past the
    limit never runs: the model gets an error result saying the limit is reached."""
    local: bool = False
    """The tool only changes state inside this process (e.g. posts to an in-process
    bus): replay calls it again, with the recorded arguments, to rebuild that state;
    its recorded result stands. Never for effects outside the process."""
    role: ToolRole | None = None
    """What the tool does to the run's control, if anything (see `orchestrion.tools.roles`):
    e.g. `Delegate(worker=...)` for a supervisor's delegation. None: an ordinary tool."""

    parameters: dict[str, Any] = field(init=False, repr=False)
    """The JSON schema of the arguments (pydantic's, without titles, typed as
    pydantic types a schema)."""
    args_model: type[pydantic.BaseModel] = field(init=False, repr=False)
    takes_context: bool = field(init=False, repr=False)
    is_async: bool = field(init=False, repr=False)

    if TYPE_CHECKING:
        # For type checkers only (the dataclass writes the real `__init__`): the deps
        # come from the function's first parameter when it is a `RunContext[...]`.
        @overload
        def __init__(
            self,
            *,
            function: Callable[Concatenate[RunContext[DepsT], ...], Any],
            name: str = "",
            description: str = "",
            effect: Effect = "read",
            approval: Approval = False,
            timeout: float | None = None,
            policy: Policy | None = None,
            max_calls: int | None = None,
            local: bool = False,
            role: ToolRole | None = None,
        ) -> None: ...

        @overload
        def __init__(
            self: Tool[Any],
            *,
            function: Callable[..., Any],
            name: str = "",
            description: str = "",
            effect: Effect = "read",
            approval: Approval = False,
            timeout: float | None = None,
            policy: Policy | None = None,
            max_calls: int | None = None,
            local: bool = False,
            role: ToolRole | None = None,
        ) -> None: ...

        def __init__(self, **kwargs: Any) -> None: ...

    def __post_init__(self) -> None:
        fn = self.function
        if not callable(fn):
            raise UserError(f"Tool function must be callable, got {fn!r}.")
        name = self.name or getattr(fn, "__name__", "")
        if not _NAME.fullmatch(name):
            raise UserError(f"Tool name {name!r} is invalid: use 1-64 letters, digits, '_' or '-'.")
        if self.local and self.effect == "write":
            raise UserError(
                f"Tool {name!r}: a write tool cannot be local (it would run again on replay)."
            )
        if self.timeout is not None:
            try:
                Policy(timeout=self.timeout)  # the same check: a finite number > 0
            except UserError:
                raise UserError(
                    f"Tool {name!r}: timeout={self.timeout!r} must be a number of seconds > 0."
                ) from None
        if self.policy is not None and not isinstance(self.policy, Policy):
            raise UserError(f"Tool {name!r}: policy={self.policy!r} is not a Policy(...).")
        if self.policy is not None and self.policy.fallback:
            raise UserError(f"Tool {name!r}: a tool's policy cannot have a fallback.")
        if self.policy is not None and self.timeout is not None and self.policy.timeout is not None:
            raise UserError(
                f"Tool {name!r}: give the timeout once, as timeout= or as policy=Policy(timeout=...)."
            )
        if self.max_calls is not None and (
            isinstance(self.max_calls, bool)
            or not isinstance(self.max_calls, int)
            or self.max_calls < 1
        ):
            raise UserError(
                f"Tool {name!r}: max_calls={self.max_calls!r} must be a whole number >= 1 "
                "(or None for no limit)."
            )
        if self.role is not None and not isinstance(self.role, ROLES):
            raise UserError(
                f"Tool {name!r}: role={self.role!r} is not a tool role (Transfer, Delegate "
                "or FinalResult from orchestrion.tools.roles), nor None."
            )
        if self.effect not in ("read", "write"):
            raise UserError(
                f"Tool {name!r}: effect must be 'read' or 'write', not {self.effect!r}."
            )
        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        takes_context, model = _args_model(fn, name, doc)
        description = self.description or "\n\n".join(
            part for part in (doc.short_description, doc.long_description) if part
        )
        schema = clean_schema(model.model_json_schema())
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "description", description)
        set_(self, "parameters", schema)
        set_(self, "args_model", model)
        set_(self, "takes_context", takes_context)
        set_(self, "is_async", inspect.iscoroutinefunction(fn))

    if not TYPE_CHECKING:
        # Hidden from type checkers: a callable `Tool` would also fit the plain
        # functions `Agent.tools` takes, so a tool whose deps are not the agent's
        # would pass unseen. Typed code calls `tool.function(...)`.

        def __call__(self, *args, **kwargs):
            """Call the function directly (handy in unit tests of the tool itself)."""
            return self.function(*args, **kwargs)

    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters)

    def parse_arguments(self, raw: JSON) -> dict[str, Any]:
        """Parse and validate arguments (JSON text, or JSON data: an approval's edited
        arguments); raises `pydantic.ValidationError`. The values are `Any`: each is
        what the function's parameter of that name is typed as."""
        if isinstance(raw, str):
            args = self.args_model.model_validate_json(raw or "{}")
        else:
            args = self.args_model.model_validate(raw)
        return dict(args.__dict__)

    def needs_approval(self, arguments: dict[str, Any]) -> bool:
        """Whether a human must approve a call with these (validated) arguments."""
        approval = self.approval
        return approval if isinstance(approval, bool) else bool(approval(arguments))


class ToolDecorator(Protocol):
    """What `@tool(...)` with options returns: it makes the `Tool`, typed by the deps
    of the function's `RunContext` as `@tool` is."""

    @overload
    def __call__(self, function: Callable[Concatenate[RunContext[D], ...], Any], /) -> Tool[D]: ...

    @overload
    def __call__(self, function: Callable[..., Any], /) -> Tool[Any]: ...


@overload
def tool(function: Callable[Concatenate[RunContext[D], ...], Any], /) -> Tool[D]: ...


@overload
def tool(function: Callable[..., Any], /) -> Tool[Any]: ...


@overload
def tool(
    *,
    name: str = "",
    description: str = "",
    effect: Effect = "read",
    approval: Approval = False,
    timeout: float | None = None,
    policy: Policy | None = None,
    max_calls: int | None = None,
) -> ToolDecorator: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str = "",
    description: str = "",
    effect: Effect = "read",
    approval: Approval = False,
    timeout: float | None = None,
    policy: Policy | None = None,
    max_calls: int | None = None,
) -> Tool[Any] | ToolDecorator:
    """Turn a function into a `Tool`: `@tool` or `@tool(effect="write", approval=True, max_calls=1)`.
    A function whose first parameter is a `RunContext[Deps]` makes a `Tool[Deps]`."""

    def wrap(fn: Callable[..., Any]) -> Tool[Any]:
        return Tool(
            function=fn,
            name=name,
            description=description,
            effect=effect,
            approval=approval,
            timeout=timeout,
            policy=policy,
            max_calls=max_calls,
        )

    return wrap(function) if function is not None else wrap


def _is_context(annotation: Any, param: inspect.Parameter) -> bool:
    if annotation is inspect.Parameter.empty:
        return param.name in ("ctx", "context")
    return annotation is RunContext or get_origin(annotation) is RunContext


def _args_model(
    fn: Callable[..., Any], name: str, doc: docstring_parser.Docstring
) -> tuple[bool, type[pydantic.BaseModel]]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise UserError(f"Tool {name!r}: cannot resolve its type hints: {exc}") from exc
    params = list(inspect.signature(fn).parameters.values())
    takes_context = bool(params) and _is_context(
        hints.get(params[0].name, params[0].annotation), params[0]
    )
    if takes_context:
        params = params[1:]
    docs = {p.arg_name: p.description for p in doc.params}
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise UserError(f"Tool {name!r}: *args and **kwargs are not supported ({p.name}).")
        if p.kind is p.POSITIONAL_ONLY:
            raise UserError(
                f"Tool {name!r}: positional-only parameter {p.name!r} is not supported."
            )
        if _is_context(hints.get(p.name, p.annotation), p) and p.annotation is not p.empty:
            raise UserError(f"Tool {name!r}: the RunContext parameter must come first.")
        annotation = hints.get(p.name, Any)
        default = ... if p.default is p.empty else p.default
        description = docs.get(p.name)
        if isinstance(default, FieldInfo):
            if description and not default.description:
                default.description = description
        elif description:
            default = pydantic.Field(default, description=description)
        fields[p.name] = (annotation, default)
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
        **fields,
    )
    return takes_context, model


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles: noise in every prompt."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    cleaned: dict[str, Any] = walk(schema)
    if cleaned.get("type") == "object":
        cleaned.setdefault("properties", {})
    return cleaned
