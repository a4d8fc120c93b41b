"""One run while it works: replay against the journal, record new steps.

Every step goes through `Execution`: it claims the step's key in the run's
`ReplayLog` (a key used twice is a determinism bug), returns the recorded result
if the journal has one, and otherwise executes and appends. This is hand-written
rather than a library because it *is* the journal.

An `Execution` is composed of a few parts, each with its own small interface:
the `ReplayLog` (the journal, claims, appends under the lease), the `Accounts`
(usage, budget, tool runs), the `Events` (what sinks see; a no-op when none
listens) and the `RunEnv` (what the runtime lends the run, read-only).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from random import Random
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from uuid import UUID, uuid4

import pydantic

from orchestrion import keys
from orchestrion._json import (
    JSON,
    JSONInput,
    NotJSON,
    as_int,
    as_number,
    clean_text,
    json_text,
    to_jsonable,
)
from orchestrion.engine.accounts import Accounts
from orchestrion.engine.breakers import Breakers, MemoryBreakers
from orchestrion.engine.divergence import THREAD, Thread
from orchestrion.engine.events import Events
from orchestrion.engine.interrupts import Interrupt, InterruptKind, interrupt_id
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.model_calls import ModelCalls, request_with_policy
from orchestrion.engine.rate_limits import Limits, MemoryLimits, key_of
from orchestrion.engine.records import (
    Answered,
    InterruptAsked,
    ModelResponded,
    Record,
    StepRaised,
    ValueKind,
    encode,
    expect,
    model_responded,
    step_returned,
    value_of,
    value_record,
)
from orchestrion.engine.replay_log import ReplayLog
from orchestrion.errors import (
    AnswerError,
    DeterminismError,
    RunError,
    RunHalted,
    Suspension,
    UserError,
    WriteUncertain,
    describe,
    validation_summary,
)
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, Usage
from orchestrion.models.base import Model
from orchestrion.policy import Policy
from orchestrion.tools.tool import clean_schema

if TYPE_CHECKING:
    from orchestrion.engine.metrics import Metrics
    from orchestrion.engine.tracing import Tracing

DepsT = TypeVar("DepsT")
T = TypeVar("T")
J = TypeVar("J", bound=JSON)

COMPLETED = StepStatus.COMPLETED
NONE_ANSWERED: frozenset[str] = frozenset()
"""`Execution.answered` until an interrupt is answered (one empty set for every run)."""


class Suspended(Suspension):
    """Raised inside a run that must wait for humans; the Runtime turns it into
    an `interrupted` RunResult."""

    def __init__(self, interrupts: list[Interrupt]) -> None:
        super().__init__(f"waiting for {len(interrupts)} answer(s)")
        self.interrupts = interrupts


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnv:
    """What the runtime lends a run, unchanged while it works. A read-only record
    rather than fields of `Execution`: nothing here is state of the run (unlike the
    log, the accounts and the answers, each of which owns what it changes)."""

    deps: Any
    """The user's dependencies: `ctx.deps`."""
    model_for: Callable[[Model | str | None, str], Model]
    """Resolves an agent's model (an instance, a name, or the default)."""
    run_child: Callable[[Execution, str, str, Any, JSON], Coroutine[Any, Any, Any]]
    """`engine.dispatch.run_child`, injected to keep this module below the agent loop."""
    policy: Policy | None = None
    """The runtime's policy: the outermost for every model and tool call."""
    breakers: Breakers = field(default_factory=MemoryBreakers)
    """The runtime's circuit breakers, shared by all its runs."""
    limits: Limits = field(default_factory=MemoryLimits)
    """The allowances of the runtime's rate limits, shared by all its runs."""
    submit: Callable[[str, str, Any, JSON], Awaitable[str]] | None = None
    """Queues a separate run of a member of a run (`ctx.submit`): given the run's id,
    the new run's idempotency key, the member and its input; the new run's id."""
    tracing: Tracing | None = None
    """The runtime's tracer (`engine.tracing`), if it traces its runs."""
    metrics: Metrics | None = None
    """The runtime's Prometheus metrics (`engine.metrics`), if it keeps them."""


class Execution:
    """One run while it works: the steps, composed of the run's parts (its journal,
    its accounts, its events, what the runtime lends it)."""

    __slots__ = ("accounts", "answered", "answers", "env", "events", "log", "outputs", "run_id")

    def __init__(
        self,
        env: RunEnv,
        log: ReplayLog,
        accounts: Accounts,
        events: Events,
        answers: dict[str, JSON],
    ) -> None:
        self.run_id = log.run_id
        self.env = env
        self.log = log
        self.accounts = accounts
        self.events = events
        self.answers = answers
        """Answers given to the run's interrupts and not journaled yet, by interrupt id."""
        self.answered: frozenset[str] = NONE_ANSWERED
        """Ids of interrupts answered (and journaled) during this execution."""
        self.outputs: dict[str, Any] = {}
        """The output of every member (`ctx.run`) finished so far, by scope key: a run
        that stops at a limit returns them as its partial results."""

    def completed(
        self, key: str, kind: str, record: Record, started_at: float, *, durable: bool = False
    ) -> Awaitable[None]:
        """Journal `record` as the step's completion, and say so to the sinks."""
        result = encode(record)
        return self.completed_as(
            key, kind, result, started_at, durable=durable, status=record.status
        )

    async def completed_as(
        self,
        key: str,
        kind: str,
        result: JSON,
        started_at: float,
        *,
        durable: bool = False,
        status: StepStatus = COMPLETED,
    ) -> None:
        """`completed` with the record already encoded (`records.model_responded`,
        `records.tool_returned`: the two every step writes, made without a record)."""
        await self.log.append(key, kind, status, result, started_at, durable)
        if self.events.listening:  # every step passes here: no call to say nothing
            self.events.step_completed(key, kind, result, started_at)  # the journal's value

    async def failed(
        self, key: str, kind: str, exc: BaseException, started_at: float, *, durable: bool = False
    ) -> None:
        """Journal that the step at `key` failed with `exc`, for good, and say so."""
        await self.log.record(
            key, kind, StepRaised(error=describe(exc)), started_at, durable=durable
        )
        self.events.step_failed(key, kind, exc)

    # -- steps -------------------------------------------------------------

    async def model_step(
        self, key: str, chain: ModelCalls, request: ModelRequest, size: int = 0
    ) -> ModelResponse:
        """The response at `key`: replayed, or asked of the models of `chain` in
        order under their policies (see `engine.model_calls`)."""
        targets = chain.targets  # their names are the models' (a `name` may be computed)
        recorded = self.log.replay.get(key)
        accounts = self.accounts
        budget = accounts.budget
        if budget is not None and (recorded is None or recorded.status is not COMPLETED):
            accounts.check_budget(targets[0].name)
            if budget.cost is not None and len(targets) > 1:
                accounts.check_priced(t.name for t in targets[1:])  # before a fallback is needed
        done = self.log.claim(key, chain.site)
        if done is not None:
            response = expect(done, ModelResponded).response
            self.events.step_replayed(key, "model", done.result)
        else:
            started = time.time()
            if self.events.listening:
                self.events.step_started(key, "model", size)
            tracing = self.env.tracing
            span = None if tracing is None else tracing.chat(self.run_id, key, chain, request)
            try:
                response = await request_with_policy(self, key, chain, request)
                answered_at = time.time() if self.env.metrics is not None else 0.0
                index = chain.position
                if response.usage.requests < 1:  # a model that does not count itself counts
                    response = replace(response, usage=replace(response.usage, requests=1))
                response = _clean_response(response)  # the run goes on with what is journaled
                answered = targets[index].name
                if accounts.prices is not None and (pricer := accounts.prices.pricer(answered)):
                    usage = response.usage
                    response = replace(response, usage=replace(usage, cost=pricer(usage)))
                fallback = answered if index else None
                responded = model_responded(response, fallback, answered)
                await self.completed_as(key, "model", responded, started)
            except BaseException as exc:
                if span is not None:
                    span.failed(exc)
                raise
            if span is not None:
                span.responded(response, answered)
            if self.env.metrics is not None:
                self.env.metrics.model_called(
                    chain.agent, answered, response.usage, answered_at - chain.started
                )
            limit = targets[index].settings.rate_limit
            if limit is not None:
                usage = response.usage
                await self.env.limits.spend(
                    key_of(answered, limit),
                    limit,
                    usage.input_tokens + usage.output_tokens,
                    usage.cost,
                )
        accounts.spent(response.usage)
        return response

    async def custom_step(
        self,
        key: str,
        fn: Callable[[], Awaitable[Any]],
        site: str,
        kind: ValueKind = "step",
        durable: bool = False,
        wait: bool = False,
    ) -> JSON:
        done = self.log.claim(key, site, nests=True)
        if done is not None:
            self.accounts.spent_below(key)
            self.events.step_replayed(key, kind, done.result)
            return value_of(done)
        started = time.time()
        if self.events.listening:
            self.events.step_started(key, kind)
        try:
            tracing = self.env.tracing
            if tracing is not None:
                call = (lambda: self.log.wait_for(fn())) if wait else fn
                done_ = await tracing.step(self.run_id, key, kind, call)
            else:
                done_ = await (self.log.wait_for(fn()) if wait else fn())
            value = journaled(done_, "result", f"Step {key}")
        except (Suspended, DeterminismError):
            raise  # the run waits, or its code is wrong: not a failure of this step
        except Exception as exc:
            await self.failed(key, kind, exc, started)
            if not isinstance(exc, RunHalted):
                self._raise_if_cut_off(key, exc)
            raise
        if kind == "step":  # the usual one (every branch of a fan-out): no record made
            await self.completed_as(key, kind, step_returned(value), started, durable=durable)
        else:  # a clock, a seed, a uuid: checked by their records
            await self.completed(key, kind, value_record(kind, value), started)
        return value

    async def gather(self, scope: str, steps: Iterable[Awaitable[T]]) -> list[T]:
        """Await steps (keyed under `scope`) concurrently. Every step runs to its end;
        then the first error is raised, or, if some wait for humans, all their
        interrupts together."""
        divergence = self.log.divergence
        tracked = divergence.waiting  # else nothing is left to check in this execution
        if tracked:
            divergence.forked(scope, 1)
            steps = (thread(scope, step) for step in steps)
        try:
            outcomes = await asyncio.gather(*steps, return_exceptions=True)
        finally:
            if tracked:
                divergence.forked(scope, -1)
        waiting: list[Interrupt] = []
        for outcome in outcomes:
            if isinstance(outcome, Suspended):
                waiting.extend(outcome.interrupts)
            elif isinstance(outcome, BaseException):
                raise outcome
        if waiting:
            raise Suspended(waiting)
        return outcomes  # type: ignore[return-value]  # no exceptions left

    def _raise_if_cut_off(self, key: str, exc: Exception) -> None:
        """A step that fails while a write tool below it was cut off mid-call
        leaves that write's effect unknown: the run must halt, not go on."""
        cut = self.log.cut_off_below(key)
        if cut:
            raise WriteUncertain(
                f"Step {key} ended ({type(exc).__name__}: {exc}) while write tool "
                f"{cut[0]} was running; whether its effect happened is unknown. "
                "Resume the run: the call is made again with the same idempotency key."
            ) from exc

    async def interrupt(
        self,
        key: str,
        kind: InterruptKind,
        payload: JSON,
        schema: JSON,
        validate: Callable[[str, JSON], JSON],
        site: str,
    ) -> JSON:
        """The answer to the interrupt at `key`; suspends the run while there is none.
        `validate(id, answer)` raises `AnswerError` before anything is journaled."""
        step_kind = "approval" if kind == "approval" else "interrupt"
        done = self.log.claim(key, site)
        if done is not None:
            self.events.step_replayed(key, step_kind, done.result)
            return expect(done, Answered).answer
        iid = interrupt_id(key)
        if iid in self.answers:
            answer = validate(iid, self.answers.pop(iid))
            await self.completed(key, step_kind, Answered(answer=answer), time.time(), durable=True)
            self.answered |= {iid}
            return answer
        if key not in self.log.replay:
            await self.log.record(key, step_kind, InterruptAsked(payload=payload), time.time())
        raise Suspended([Interrupt(iid, key, kind, payload, schema)])


class Context(Generic[DepsT]):
    """The engine's `RunContext`: one per scope (a run, an agent, a tool call)."""

    __slots__ = ("_counts", "_ex", "_gathering", "key")

    def __init__(self, ex: Execution, key: str) -> None:
        self._ex = ex
        self.key = key
        self._counts: dict[str, int] | None = None
        """How many unnamed steps of each kind (`interrupt`, `now`, ...) this scope made."""
        self._gathering = 0

    @property
    def run_id(self) -> str:
        return self._ex.run_id

    @property
    def deps(self) -> DepsT:
        deps: DepsT = self._ex.env.deps
        return deps

    @property
    def usage(self) -> Usage:
        return self._ex.accounts.usage

    @property
    def idempotency_key(self) -> str:
        return self._ex.log.idempotency_key(self.key)

    def _name(self, name: str | None, stem: str) -> str:
        if name is None:
            if self._gathering:
                raise UserError(
                    f"ctx.{stem} inside ctx.gather needs name=...: branches finish in a "
                    "different order on replay, so numbering them would mix up their answers."
                )
            counts = self._counts = self._counts or {}
            count = counts[stem] = counts.get(stem, 0) + 1
            return keys.child(self.key, keys.numbered(stem, count))
        return keys.child(self.key, name)

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
        self, payload: JSONInput, *, name: str | None = None, answer_type: Any = str
    ) -> Any:
        key = self._name(name, "interrupt")
        adapter = _adapter(answer_type)
        schema = clean_schema(adapter.json_schema())

        def validate(iid: str, value: JSON) -> JSON:
            # Strictly, as the JSON it is: `true` is no int, "yes" no bool, "1" no number.
            try:
                checked = adapter.validate_json(json_text(value, "answer"), strict=True)
                return to_jsonable(checked, "answer")
            except (pydantic.ValidationError, NotJSON) as exc:
                problem = (
                    validation_summary(exc) if isinstance(exc, pydantic.ValidationError) else exc
                )
                raise AnswerError(
                    f"Answer {value!r} to interrupt {iid} ({key}) is invalid: "
                    f"{problem}. Expected JSON matching {schema}."
                ) from None

        answer = await self._ex.interrupt(
            key,
            "input",
            journaled(payload, "payload", f"Interrupt {key}", "was asked with"),
            schema,
            validate,
            _caller(),
        )
        return adapter.validate_python(answer)

    # `step` and `run` hand back the engine's coroutine rather than awaiting it in
    # one of their own: a fan-out makes thousands of them.

    @overload
    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[J]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Coroutine[Any, Any, J]: ...

    @overload
    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[object]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Coroutine[Any, Any, JSON]: ...

    def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[object]],
        *,
        durable: bool = False,
        wait: bool = False,
    ) -> Coroutine[Any, Any, JSON]:
        key = self._name(name, "step")
        return self._ex.custom_step(key, fn, _caller(), durable=durable, wait=wait)

    async def submit(self, runnable: Any, input: JSONInput, *, name: str | None = None) -> str:
        ex = self._ex
        key = self._name(None if name is None else keys.submitted(name), "submit")
        submit = ex.env.submit
        if submit is None:
            raise UserError("ctx.submit needs a Runtime: this run has no way to queue runs.")
        data = journaled(input, "input", f"ctx.submit({runnable.name!r})", "was given")
        run_key = ex.log.idempotency_key(key)
        value = await ex.custom_step(
            key, lambda: submit(ex.run_id, run_key, runnable, data), _caller(), durable=True
        )
        return str(value)

    def run(self, runnable: Any, input: Any, *, key: str | None = None) -> Coroutine[Any, Any, Any]:
        scope = keys.child(self.key, key) if key else self.key
        member, marker = keys.member_keys(scope, runnable.name)
        self._ex.log.claim(marker, f"ctx.run of {runnable.name!r} at {_caller()}", marker=True)
        return self._ex.env.run_child(self._ex, scope, member, runnable, input)

    def loop_detected(self, kind: str, subject: str, times: int, action: str) -> None:
        # Found again while journaled steps are still to be replayed: reported before.
        # (An approximation where branches run at once: one still replaying hides
        # another's live finding.)
        replayed = self._ex.log.divergence.waiting
        self._ex.events.loop_guard_triggered(self.key, kind, subject, times, action, replayed)

    async def gather(self, *steps: Awaitable[T]) -> list[T]:
        self._gathering += 1
        try:
            return await self._ex.gather(self.key, steps)
        finally:
            self._gathering -= 1

    async def now(self, *, name: str | None = None) -> datetime:
        key = self._name(name, "now")
        stamp = await self._ex.custom_step(key, _clock, _caller(), "clock")
        return datetime.fromtimestamp(as_number(stamp, key), UTC)

    async def random(self, *, name: str | None = None) -> Random:
        key = self._name(name, "random")
        seed = await self._ex.custom_step(key, _seed, _caller(), "random")
        return Random(as_int(seed, key))

    async def uuid(self, *, name: str | None = None) -> UUID:
        key = self._name(name, "uuid")
        value = await self._ex.custom_step(key, _uuid, _caller(), "uuid")
        return UUID(str(value))


async def _clock() -> float:
    return time.time()


async def _seed() -> int:
    return secrets.randbits(53)  # exact in every JSON reader, JavaScript's included


async def _uuid() -> str:
    return str(uuid4())


async def thread(scope: str, step: Awaitable[T]) -> T:
    """Await `step` as one sequential thread of a run, its steps keyed under `scope`
    ("" for the whole run): the run's own task, or one branch of a gather."""
    token = THREAD.set(Thread(asyncio.current_task(), scope))
    try:
        return await step
    finally:
        THREAD.reset(token)


_adapters: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    adapter = _adapters.get(tp)
    if adapter is None:
        adapter = _adapters[tp] = pydantic.TypeAdapter(tp)
    return adapter


def journaled(value: Any, root: str, source: str, verb: str = "returned") -> JSON:
    """`value` as the journal holds it, which is what the run goes on with; a
    `RunError` naming its `source` and the path inside it if it cannot be held."""
    try:
        return to_jsonable(value, root)
    except NotJSON as exc:
        raise RunError(
            f"{source} {verb} a {type(value).__name__}, which is not JSON: {exc}"
        ) from exc


def _clean_response(response: ModelResponse) -> ModelResponse:
    """`response` with the lone surrogates and NULs of its text and tool calls replaced (see
    `orchestrion._json.clean_text`): no store can hold them."""
    # ASCII with no NUL: nothing `clean_text` would change (written out: every step).
    text = response.text
    if (text is None or (text.isascii() and "\x00" not in text)) and all(
        (s := c.arguments + c.id + c.name).isascii() and "\x00" not in s
        for c in response.tool_calls
    ):
        return response  # the usual case: nothing to clean, nothing built
    text = response.text if response.text is None else clean_text(response.text)
    calls = tuple(
        ToolCall(clean_text(c.id), clean_text(c.name), clean_text(c.arguments))
        for c in response.tool_calls
    )
    if text == response.text and calls == response.tool_calls:
        return response
    return replace(response, text=text, tool_calls=calls)


def _caller() -> str:
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
