"""`Agent`: instructions, a model, tools and a typed output.

An agent is a frozen definition; running it is the engine's model/tool loop,
each model request and tool call a journaled step. Everything that can be
checked is checked here, at definition time, before any model call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, cast, overload

import pydantic
from typing_extensions import TypeVar

from orchestrion.context import RunContext
from orchestrion.errors import UserError
from orchestrion.guards import LoopGuard
from orchestrion.messages import ModelSettings, ToolDefinition
from orchestrion.models.base import Model
from orchestrion.policy import Policy
from orchestrion.tools.roles import FinalResult, ToolRole, Transfer
from orchestrion.tools.tool import Tool

DepsT = TypeVar("DepsT", contravariant=True, default=object)
"""What the agent's tools and instructions read as `ctx.deps`, so what `Runtime.run`
must be given as `deps=`: `object` when nothing reads them (any deps will do)."""
OutputT = TypeVar("OutputT", covariant=True, default=str)
"""What a run of the agent returns: its `output_type`, `str` by default."""
D = TypeVar("D", default=object)

FINAL_RESULT_TOOL = "final_result"
"""The model-visible name of the tool with role `FinalResult`."""
TRANSFER = "transfer_to_"
"""Begins the model-visible name of each tool with role `Transfer`."""
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_NO_TOOLS = cast("tuple[Tool[object], ...]", ())
"""The default of `tools` as type checkers see it: no tools read any deps."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Agent(Generic[DepsT, OutputT]):
    """A specialised agent. Run it with `Runtime.run(agent, input)`.

    Generic in its deps and its output, both inferred: `Agent(name=..., tools=[pay],
    output_type=Invoice)` is an `Agent[Bank, Invoice]` when `pay` takes a
    `RunContext[Bank]`. An `output_type` that is no class to a type checker (a union,
    `Literal`, `Annotated`) makes an `Agent[..., Any]`. Tools that read no deps are
    `Tool[Any]`s, so mixed with a `Tool[Bank]` they make the deps `Any` (unchecked):
    annotate such an agent (`agent: Agent[Bank, str] = Agent(...)`) to check them."""

    name: str
    """Unique within a team; appears in every step key (`name/turn-2/model`)."""
    instructions: str | Callable[[RunContext[DepsT]], str] = ""
    """The system prompt, or a function of the run context returning it."""
    model: Model | str | None = None
    """A `Model`, a string like `openai:gpt-4.1-mini`, or None for the runtime's default."""
    tools: Sequence[Tool[DepsT] | Callable[..., Any]] = ()
    """The only tools this agent may call. Plain functions become `Tool`s (their deps
    are not typed: decorate them with `@tool` for that)."""
    output_type: type[OutputT] = str  # type: ignore[assignment]  # OutputT's default
    """`str`, or a pydantic model or type the final answer is validated as."""
    output_retries: int = 2
    """How many invalid final answers are sent back to the model before the run fails."""
    max_turns: int = 20
    """Model requests allowed before the run fails with `MaxTurnsExceeded`."""
    description: str = ""
    """What the agent does, for the agents and people that delegate to it."""
    handoffs: Sequence[str] = ()
    """Agents this one may transfer control to (set by the `Handoff` pattern): each
    becomes a `transfer_to_<name>` tool that ends this agent's turn."""
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    loop_guard: LoopGuard | None = field(default_factory=LoopGuard)
    """What happens when the agent repeats a tool call, or calls a write tool turn
    after turn; None turns the guard off."""
    context_limit: ContextLimit | None = None
    """The most this agent may send in one request, and what to do beyond it."""
    policy: Policy | None = None
    """Timeout, retry, breaker and fallback for this agent's model and tool calls
    (a model's or tool's own policy wins). Agents in its `fallback` take over the
    agent's input, in order, when the agent fails."""

    tool_map: Mapping[str, Tool[DepsT]] = field(init=False, repr=False)
    tool_definitions: tuple[ToolDefinition, ...] = field(init=False, repr=False)
    tool_roles: Mapping[str, ToolRole] = field(init=False, repr=False)
    """The role of each control tool the model may call, by name (see `orchestrion.tools.roles`)."""
    output_adapter: pydantic.TypeAdapter[Any] | None = field(init=False, repr=False)
    """Validates the final answer as `output_type` (None for `str`); `Any` because a
    type form such as a union is no class to a type checker."""
    fixed_size: int = field(init=False, repr=False)
    """Characters every request carries besides the messages (tool definitions)."""
    output_wrapped: bool = field(init=False, repr=False)
    """True when the output schema is not an object, so the model sends it under `result`."""
    fallback_agents: tuple[Agent[Any, Any], ...] = field(init=False, repr=False)
    """The agents of `policy.fallback`; `Any`: a fallback may have other deps and output."""

    if TYPE_CHECKING:
        # For type checkers only (the dataclass writes the real `__init__`). The first
        # overload types the deps and the output; an `output_type` that is no class
        # to a checker (a union, `Literal`, `Annotated`) takes the second, as `Any`.
        @overload
        def __init__(
            self,
            *,
            name: str,
            instructions: str | Callable[[RunContext[DepsT]], str] = "",
            model: Model | str | None = None,
            tools: Sequence[Tool[DepsT] | Callable[..., Any]] = _NO_TOOLS,
            output_type: type[OutputT] = str,  # type: ignore[assignment]  # OutputT's default
            output_retries: int = 2,
            max_turns: int = 20,
            description: str = "",
            handoffs: Sequence[str] = (),
            model_settings: ModelSettings = ...,
            loop_guard: LoopGuard | None = ...,
            context_limit: ContextLimit | None = None,
            policy: Policy | None = None,
        ) -> None: ...

        @overload
        def __init__(
            self: Agent[D, Any],
            *,
            name: str,
            instructions: str | Callable[[RunContext[D]], str] = "",
            model: Model | str | None = None,
            tools: Sequence[Tool[D] | Callable[..., Any]] = _NO_TOOLS,
            output_type: object,
            output_retries: int = 2,
            max_turns: int = 20,
            description: str = "",
            handoffs: Sequence[str] = (),
            model_settings: ModelSettings = ...,
            loop_guard: LoopGuard | None = ...,
            context_limit: ContextLimit | None = None,
            policy: Policy | None = None,
        ) -> None: ...

        def __init__(self, **kwargs: Any) -> None: ...

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise UserError(
                f"Agent name {self.name!r} is invalid: use 1-64 letters, digits, '_', '-' or '.'"
                " (it becomes part of every step key)."
            )
        if self.max_turns < 1 or self.output_retries < 0:
            raise UserError(
                f"Agent {self.name!r}: max_turns must be >= 1 and output_retries >= 0 "
                f"(got {self.max_turns} and {self.output_retries})."
            )
        tools = tuple(t if isinstance(t, Tool) else Tool(function=t) for t in self.tools)
        tool_map: dict[str, Tool[DepsT]] = {}
        roles: dict[str, ToolRole] = {}
        for t in tools:
            if t.name in tool_map:
                raise UserError(f"Agent {self.name!r} has two tools named {t.name!r}; rename one.")
            if isinstance(t.role, Transfer | FinalResult):
                raise UserError(
                    f"Agent {self.name!r}: tool {t.name!r} has role {t.role!r}, which only the "
                    "agent gives its own tools: name the target in handoffs=, or set output_type=."
                )
            tool_map[t.name] = t
            if t.role is not None:
                roles[t.name] = t.role
        definitions = [t.definition() for t in tools]
        for target in self.handoffs:
            name = TRANSFER + target
            if name in tool_map:
                raise UserError(f"Agent {self.name!r}: a tool is already named {name!r}.")
            roles[name] = Transfer(target=target)
            definitions.append(
                ToolDefinition(
                    name,
                    f"Transfer the conversation to {target}; it takes over from here.",
                    {
                        "type": "object",
                        "properties": {"reason": {"type": "string", "description": "Why."}},
                        "additionalProperties": False,
                    },
                )
            )
        adapter = None
        wrapped = False
        if self.output_type is not str:
            if FINAL_RESULT_TOOL in tool_map:
                raise UserError(
                    f"Agent {self.name!r}: the tool name {FINAL_RESULT_TOOL!r} is reserved for typed output."
                )
            try:
                adapter = pydantic.TypeAdapter(self.output_type)
                schema = adapter.json_schema()
            except pydantic.PydanticUserError as exc:
                raise UserError(
                    f"Agent {self.name!r}: output_type {self.output_type!r} cannot be validated: {exc}"
                ) from exc
            if schema.get("type") != "object":
                wrapped = True
                schema = {
                    "type": "object",
                    "properties": {"result": schema},
                    "required": ["result"],
                }
            roles[FINAL_RESULT_TOOL] = FinalResult()
            definitions.append(
                ToolDefinition(
                    FINAL_RESULT_TOOL,
                    "Give the final answer. Call this once the task is done.",
                    schema,
                )
            )
        set_ = object.__setattr__
        set_(self, "tools", tools)
        set_(self, "handoffs", tuple(self.handoffs))
        set_(self, "tool_map", MappingProxyType(tool_map))
        set_(self, "tool_definitions", tuple(definitions))
        set_(self, "tool_roles", MappingProxyType(roles))
        set_(self, "output_adapter", adapter)
        set_(self, "output_wrapped", wrapped)
        set_(self, "fallback_agents", self._fallback_agents())
        set_(
            self,
            "fixed_size",
            sum(len(d.name) + len(d.description) + len(str(d.parameters)) for d in definitions),
        )

    def _fallback_agents(self) -> tuple[Agent[Any, Any], ...]:
        if self.policy is not None and not isinstance(self.policy, Policy):
            raise UserError(f"Agent {self.name!r}: policy={self.policy!r} is not a Policy(...).")
        agents: list[Agent[Any, Any]] = []
        fallback = self.policy.fallback if self.policy is not None else None
        for f in fallback or ():
            if isinstance(f, Agent):
                if f.name == self.name or f.name in {a.name for a in agents}:
                    raise UserError(
                        f"Agent {self.name!r}: fallback agent names must differ from the agent's "
                        f"and from each other ({f.name!r} repeats); their steps are keyed by name."
                    )
                agents.append(f)
            elif not isinstance(f, str | Model):
                raise UserError(
                    f"Agent {self.name!r}: policy fallback {f!r} is neither an Agent nor a model."
                )
        named: dict[str, Agent[Any, Any]] = {self.name: self}
        stack = list(agents)
        while stack:  # the fallbacks' own fallbacks join the chain: names stay unique
            a = stack.pop()
            if named.setdefault(a.name, a) is not a:
                raise UserError(
                    f"Agent {self.name!r}: two different agents named {a.name!r} are in its "
                    "chain of fallbacks; their steps are keyed by name. Rename one."
                )
            stack.extend(a.fallback_agents)
        return tuple(agents)


def fallback_chain(agent: Agent[Any, Any]) -> list[Agent[Any, Any]]:
    """The agent, then its fallback agents depth first (each with its own), each once:
    the order in which they take over its input, each keyed `<agent>/fallback/<name>`."""
    chain: list[Agent[Any, Any]] = []
    seen: set[str] = set()

    def add(a: Agent[Any, Any]) -> None:
        if a.name not in seen:
            seen.add(a.name)
            chain.append(a)
            for f in a.fallback_agents:
                add(f)

    add(agent)
    return chain


@dataclass(frozen=True, kw_only=True, slots=True)
class ContextLimit:
    """The most an agent may send in one model request, estimated at four
    characters a token. Over it, `drop_oldest` drops the oldest exchanges (a
    model answer with its tool results) after the task; with a `summarizer`
    agent the dropped exchanges are replaced by its summary (a journaled child
    run); `fail` ends the run with `ContextTooLarge`."""

    max_tokens: int
    action: Literal["drop_oldest", "fail"] = "drop_oldest"
    summarizer: Agent[Any, Any] | None = None
    """An agent that summarises the dropped turns (with `drop_oldest`). Of any deps
    and output: it runs with the run's deps, and its output is read as text."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise UserError(f"ContextLimit max_tokens={self.max_tokens} must be positive.")
        if self.action not in ("drop_oldest", "fail"):
            raise UserError(
                f"ContextLimit action must be 'drop_oldest' or 'fail', not {self.action!r}."
            )
