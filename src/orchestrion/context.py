"""`RunContext`: what orchestration code and tools see of the run they are in.

This is a protocol so that definitions (tools, agents, patterns) depend on it
without importing the engine, which provides the implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from random import Random
from typing import Any, Protocol, TypeVar, overload
from uuid import UUID

from orchestrion._json import JSON, JSONInput
from orchestrion.messages import Usage

DepsT_co = TypeVar("DepsT_co", covariant=True)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
J = TypeVar("J", bound=JSON)


class _TypedAgent(Protocol[T_co]):
    """What `ctx.run` sees of an `Agent` (this module sits below `agent.py`): its
    output type. An agent whose `output_type` is a union or another type form is
    an `Agent[..., Any]`, so it runs as `Any`."""

    @property
    def name(self) -> str: ...

    @property
    def output_type(self) -> type[T_co]: ...


class _TypedWorkflow(Protocol[T_co]):
    """What `ctx.run` sees of a workflow or pattern: what its `invoke` returns."""

    @property
    def name(self) -> str: ...

    def invoke(self, ctx: RunContext[Any], input: Any, /) -> Awaitable[T_co]: ...


class RunContext(Protocol[DepsT_co]):
    """Passed explicitly as the first parameter of a tool or a workflow."""

    @property
    def run_id(self) -> str:
        """The id of the run, stable across resumes."""
        ...

    @property
    def key(self) -> str:
        """The journal key of the step being executed, e.g. `bank/turn-2/tool/pay#call_1`."""
        ...

    @property
    def deps(self) -> DepsT_co:
        """The user's dependencies, given to `Runtime.run(..., deps=...)`."""
        ...

    @property
    def usage(self) -> Usage:
        """Tokens and model requests of the run so far (replayed steps included)."""
        ...

    @property
    def idempotency_key(self) -> str:
        """Stable for this run and step: pass it to downstream APIs so a step
        re-executed after a crash has its effect only once."""
        ...

    @overload
    async def interrupt(self, payload: JSONInput, *, name: str | None = None) -> str: ...

    @overload
    async def interrupt(
        self, payload: JSONInput, *, name: str | None = None, answer_type: type[T]
    ) -> T: ...

    @overload
    async def interrupt(
        self, payload: JSONInput, *, name: str | None = None, answer_type: object
    ) -> Any: ...  # unions, Literal, Annotated: not a `type` to mypy

    async def interrupt(
        self, payload: JSONInput, *, name: str | None = None, answer_type: object = str
    ) -> Any:
        """Ask a human. The run suspends with status `interrupted` until the answer
        is given to `Runtime.resume`; then this returns the answer, validated as
        `answer_type` (str by default). Nothing journaled before it runs again.

        A checker knows the answer's type when `answer_type` is a class; a union,
        `Literal` or `Annotated` form is no `type` to it, so the answer is `Any`."""
        ...

    @overload
    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[J]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Awaitable[J]: ...

    @overload
    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[object]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Awaitable[JSON]: ...

    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[object]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Awaitable[JSON]:
        """Run `fn` once per run: its result is journaled as JSON and replayed. What
        it returns is that JSON (first time and on replay alike), so a function
        returning JSON data gives its own type back, and any other (a model, a
        dataclass, a datetime) gives `JSON`. Build `name` from the input and
        journaled values only: a resume that asks for a step the journal lacks while
        journaled ones go unasked raises `DeterminismError`.

        `durable=True` returns only once the result is committed to the store, even
        under `durability="async"`: for a result that something outside the run is
        then told about (a message acknowledged to its queue, say).

        `wait=True` says that `fn` only waits (for mail, an event elsewhere) and may
        be cut off and run again: a worker that stops ends it at once and puts the
        run back on its queue, rather than waiting for it through its grace period."""
        ...

    async def submit(self, runnable: Any, input: JSONInput, *, name: str | None = None) -> str:
        """Queue a separate run of `runnable` on `input`, for any worker to take (on
        this run's queue, one priority above it, so that workers take it before new
        work), and return its id. `runnable` must be
        a member of this run's runnable (held in a field of one of its patterns),
        so that a worker finds it from this run's target; this run must have been
        submitted to a queue. Journaled: a replay gets the same run, submitted once.
        Its step is `submit-<name>`; unnamed calls are `submit-1`, `submit-2`, ...;
        inside `ctx.gather`, name them. A fork of this run at a later step is refused
        (it would share the runs)."""
        ...

    async def now(self, *, name: str | None = None) -> datetime:
        """The current time (UTC), journaled: a replay gets the first run's time. Use
        it for any time that decides something, names a step or leaves the run.
        Unnamed calls are the steps `now-1`, `now-2`, ...; inside `ctx.gather`, name them."""
        ...

    async def random(self, *, name: str | None = None) -> Random:
        """A random generator from a journaled seed: the same draws on every replay.
        Use it for every random choice (a member, a sample, an order). Unnamed calls
        are the steps `random-1`, `random-2`, ...; inside `ctx.gather`, name them."""
        ...

    async def uuid(self, *, name: str | None = None) -> UUID:
        """A random UUID (version 4), journaled: the same on every replay. Use it for
        ids sent to the outside or built into step names. Unnamed calls are the steps
        `uuid-1`, `uuid-2`, ...; inside `ctx.gather`, name them."""
        ...

    @overload
    def run(
        self, runnable: _TypedAgent[T], input: JSONInput, *, key: str | None = None
    ) -> Awaitable[T]: ...

    @overload
    def run(
        self, runnable: _TypedWorkflow[T], input: JSONInput, *, key: str | None = None
    ) -> Awaitable[T]: ...

    def run(self, runnable: Any, input: JSONInput, *, key: str | None = None) -> Awaitable[Any]:
        """Run an agent or pattern as part of this one, returning its output; its
        steps are keyed under `<this key>[/<key>]/<its name>`. Give `key` when the
        same member runs twice. (`runnable` is an `orchestrion.Runnable`; this
        module sits below it, so the overloads above describe one structurally.)"""
        ...

    def loop_detected(self, kind: str, subject: str, times: int, action: str) -> None:
        """Report a loop a guard found (`kind`: tool, write, delegation, handoff, no_progress)
        and what it did (`action`: warn, stop) to the run's event sinks."""
        ...

    async def gather(self, *steps: Awaitable[T]) -> list[T]:
        """Await steps (e.g. `ctx.run(...)` calls) concurrently, with no barrier
        between them. All run to their end; then the first error is raised, or
        the run suspends with every branch's interrupts at once."""
        ...
