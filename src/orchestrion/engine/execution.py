"""One run while it works: replay against the journal, record new steps.

Every step goes through `Execution`: it claims the step's key (a key used
twice is a determinism bug), returns the recorded result if the journal has
one, and otherwise executes and appends. This is hand-written rather than a
library because it *is* the journal.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import replace
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
    clean_data,
    clean_text,
    json_text,
    to_jsonable,
)
from orchestrion.budget import Budget
from orchestrion.engine.breakers import Breakers, MemoryBreakers
from orchestrion.engine.divergence import THREAD, Divergence, Thread
from orchestrion.engine.events import (
    LoopGuardTriggered,
    ModelDelta,
    Sink,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from orchestrion.engine.interrupts import Interrupt, InterruptKind, interrupt_id
from orchestrion.engine.journal import Entry, StepStatus, latest_by_key
from orchestrion.engine.model_calls import ModelCalls, request_with_policy
from orchestrion.engine.records import (
    Answered,
    InterruptAsked,
    ModelResponded,
    Record,
    StepRaised,
    ValueKind,
    WriteStarted,
    encode,
    expect,
    value_of,
    value_record,
)
from orchestrion.engine.store import Store
from orchestrion.errors import (
    AnswerError,
    BudgetExceeded,
    DeterminismError,
    ModelError,
    RunError,
    RunHalted,
    UserError,
    WriteUncertain,
    describe,
    validation_summary,
)
from orchestrion.messages import ModelRequest, ModelResponse, TextDelta, ToolCall, Usage
from orchestrion.models.base import Model
from orchestrion.policy import Policy
from orchestrion.pricing import Prices
from orchestrion.tools.tool import clean_schema

if TYPE_CHECKING:
    from orchestrion.engine.tool_limits import ToolRuns

DepsT = TypeVar("DepsT")
T = TypeVar("T")
J = TypeVar("J", bound=JSON)

COMPLETED = StepStatus.COMPLETED


class Suspended(Exception):
    """Raised inside a run that must wait for humans; the Runtime turns it into
    an `interrupted` RunResult."""

    def __init__(self, interrupts: list[Interrupt]) -> None:
        super().__init__(f"waiting for {len(interrupts)} answer(s)")
        self.interrupts = interrupts


class Execution:
    """The state of one run while it works."""

    __slots__ = (
        "_model_keys",
        "_model_usage",
        "answered",
        "answers",
        "breakers",
        "budget",
        "claimed",
        "created_at",
        "cut_off",
        "deps",
        "divergence",
        "failures",
        "fence",
        "halted",
        "model_for",
        "origin_keys",
        "outputs",
        "policy",
        "prices",
        "replay",
        "run_child",
        "run_id",
        "seq",
        "sink",
        "steps",
        "store",
        "sync",
        "token",
        "tool_runs",
        "usage",
        "writes",
    )

    def __init__(
        self,
        *,
        run_id: str,
        store: Store,
        entries: list[Entry],
        sink: Sink | None,
        sync: bool,
        answers: dict[str, JSON],
        deps: Any,
        model_for: Callable[[Model | str | None, str], Model],
        run_child: Callable[[Execution, str, Any, JSON], Coroutine[Any, Any, Any]],
        budget: Budget | None = None,
        created_at: float = 0.0,
        prices: Prices | None = None,
        policy: Policy | None = None,
        breakers: Breakers | None = None,
        token: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.token = token
        """The fencing token of this process's lease on the run: every append carries it."""
        self.halted: BaseException | None = None
        """Set (to a `LeaseLost`) when this process lost the run: the next step raises it."""
        self.fence: Callable[[], Awaitable[None]] | None = None
        """Confirms in the store that this process still owns the run (raises
        `LeaseLost` if not): for a write about to run with no journal entry first."""
        self.replay = latest_by_key(entries)
        self.failures: dict[str, list[Entry]] = {}
        """Failed attempts journaled before this execution, by step key: where a
        step's retries and fallbacks resume."""
        self.writes: set[str] = set()
        """Keys of the write-tool calls that started, journaled or live."""
        self.origin_keys: dict[str, str] = {}
        """Idempotency keys of writes that started in the run this one was forked from."""
        for e in entries:
            if e.status is StepStatus.FAILED:
                self.failures.setdefault(e.key, []).append(e)
            elif e.status is StepStatus.STARTED:
                self.writes.add(e.key)
                origin = expect(e, WriteStarted).origin_key
                if origin is not None:
                    self.origin_keys[e.key] = origin
        self.seq = entries[-1].seq + 1 if entries else 0
        self.divergence = Divergence(entries, self.replay)
        """Catches code that takes another path than the journal's on resume."""
        self.sink = sink
        self.sync = sync
        self.answers = answers
        self.answered: set[str] = set()
        """Ids of interrupts answered (and journaled) during this execution."""
        self.deps = deps
        self.model_for = model_for
        self.run_child = run_child
        """`engine.dispatch.run_child`, injected to keep this module below the agent loop."""
        self.budget = budget
        self.created_at = created_at
        self.prices = prices
        self.policy = policy
        """The runtime's policy: the outermost for every model and tool call."""
        self.breakers = breakers if breakers is not None else MemoryBreakers()
        self.cut_off: set[str] = set()
        """Keys of write tools cancelled mid-call (e.g. by a branch's timeout)."""
        self.outputs: dict[str, Any] = {}
        """The output of every member (`ctx.run`) finished so far, by scope key: a run
        that stops at a limit returns them as its partial results."""
        self.claimed: dict[str, str] = {}
        self.steps = 0
        """Steps claimed in this run (model requests, tool calls, answers, custom steps)."""
        self.usage = Usage()
        self.tool_runs: ToolRuns | None = None
        """Which calls of each tool ran, for `Tool.max_calls`: built from the journal on first need."""
        self._model_keys: list[str] | None = None
        self._model_usage: list[Usage] = []

    # -- primitives --------------------------------------------------------

    def claim(self, key: str, site: str, *, nests: bool = False) -> Entry | None:
        """Reserve `key` for this step; return its recorded completion, if any.
        `nests`: the step runs a function of the user's, which may claim steps too."""
        if self.halted is not None:
            raise self.halted
        first = self.claimed.get(key)
        if first is not None:
            fix = (
                "Run the same member twice with distinct ctx.run(..., key=...)"
                if keys.is_scope_marker(key)
                else "Give the two steps distinct names"
            )
            raise DeterminismError(
                f"Step key {key!r} was used twice in run {self.run_id}: first by {first}, "
                f"then by {site}. {fix}, and keep orchestration code deterministic (no random "
                "or time-dependent step names)."
            )
        self.claimed[key] = site
        if not keys.is_scope_marker(key):  # a `ctx.run` scope is not a step
            self.steps += 1
        if self.divergence.waiting:  # before the step runs: a new one off the path raises
            self.divergence.asked(key, self.claimed, self.run_id, nests=nests)
        done = self.replay.get(key)
        return done if done is not None and done.status is COMPLETED else None

    def record(
        self, key: str, kind: str, record: Record, started_at: float, *, durable: bool = False
    ) -> Awaitable[None]:
        """Append `record` as the state of the step at `key`."""
        return self._append(key, kind, record.status, encode(record), started_at, durable)

    def _append(
        self,
        key: str,
        kind: str,
        status: StepStatus,
        result: JSON,
        started_at: float,
        durable: bool,
    ) -> Awaitable[None]:
        if self.halted is not None:
            raise self.halted
        if status is StepStatus.FAILED:  # an exception's message may hold anything
            result = clean_data(result)
        entry = Entry(self.seq, key, kind, status, result, started_at, time.time())
        self.seq += 1
        return self.store.append(
            self.run_id, (entry,), durable=durable or self.sync, token=self.token
        )

    def usage_under(self, key: str, *, besides: str | None = None) -> Usage:
        """Usage of the journaled model steps below `key` (except those below
        `besides`): a replayed step that skips its children (a delegation, a
        branch) still counts what they spent."""
        if self._model_keys is None:  # built once per resume, on first need
            models = sorted(
                (k, expect(e, ModelResponded).response.usage)
                for k, e in self.replay.items()
                if e.kind == "model" and e.status is COMPLETED
            )
            self._model_keys = [k for k, _ in models]
            self._model_usage = [u for _, u in models]
        start, end = self._span(key)
        skip_start, skip_end = self._span(besides) if besides is not None else (end, end)
        total = Usage()
        for usage in self._model_usage[start:skip_start] + self._model_usage[skip_end:end]:
            total += usage
        return total

    def _span(self, key: str) -> tuple[int, int]:
        """Where the model keys below `key` lie in the sorted `_model_keys`."""
        assert self._model_keys is not None
        below = keys.below(key)
        start = bisect.bisect_left(self._model_keys, below.start)
        return start, bisect.bisect_left(self._model_keys, below.stop)

    def replayed(self, key: str, kind: str, result: JSON) -> None:
        if self.sink is not None:
            self.sink(StepCompleted(self.run_id, key, kind, result, 0.0, True))

    def started(self, key: str, kind: str, size: int = 0) -> None:
        if self.sink is not None:
            self.sink(StepStarted(self.run_id, key, kind, size))

    async def completed(
        self, key: str, kind: str, record: Record, started_at: float, *, durable: bool = False
    ) -> None:
        result = encode(record)  # once: the journal and the event share it
        await self._append(key, kind, record.status, result, started_at, durable)
        if self.sink is not None:
            duration = time.time() - started_at
            self.sink(StepCompleted(self.run_id, key, kind, result, duration, False))

    async def failed(
        self, key: str, kind: str, exc: BaseException, started_at: float, *, durable: bool = False
    ) -> None:
        await self.record(key, kind, StepRaised(error=describe(exc)), started_at, durable=durable)
        if self.sink is not None:
            self.sink(StepFailed(self.run_id, key, kind, f"{type(exc).__name__}: {exc}"))

    # -- steps -------------------------------------------------------------

    async def model_step(
        self, key: str, chain: ModelCalls, request: ModelRequest, size: int = 0
    ) -> ModelResponse:
        """The response at `key`: replayed, or asked of the models of `chain` in
        order under their policies (see `engine.model_calls`)."""
        targets = chain.targets  # their names are the models' (a `name` may be computed)
        recorded = self.replay.get(key)
        if self.budget is not None and (recorded is None or recorded.status is not COMPLETED):
            self.check_budget(targets[0].name)
            if self.budget.cost is not None:  # a fallback must be priced before it is needed
                for other in targets[1:]:
                    self._check_price(self.budget.cost, other.name)
        done = self.claim(key, f"a model request ({targets[0].name})")
        if done is not None:
            response = expect(done, ModelResponded).response
            self.replayed(key, "model", done.result)
        else:
            started = time.time()
            self.started(key, "model", size)
            response = await request_with_policy(self, key, chain, request)
            index = chain.position
            if response.usage.requests < 1:  # a model that does not count itself still counts
                response = replace(response, usage=replace(response.usage, requests=1))
            response = _clean_response(response)  # the run goes on with what is journaled
            answered = targets[index].name
            if self.prices is not None and (pricer := self.prices.pricer(answered)):
                response = replace(
                    response, usage=replace(response.usage, cost=pricer(response.usage))
                )
            fallback = answered if index else None
            await self.completed(
                key, "model", ModelResponded(response=response, fallback=fallback), started
            )
        self.usage += response.usage
        return response

    def send(self, key: str, model: Model, request: ModelRequest) -> Awaitable[ModelResponse]:
        """One request to `model`, streamed to the sink if there is one."""
        return model.request(request) if self.sink is None else self._stream(key, model, request)

    def check_budget(self, model: str | None, *, ahead: float = 0.0) -> None:
        """Raise `BudgetExceeded` if the run's budget is spent (before a call of
        `model`, if given), or will be after `ahead` more seconds (before a retry's wait)."""
        budget = self.budget
        if budget is None:
            return
        if budget.cost is not None and model is not None:
            self._check_price(budget.cost, model)
        reached = budget.exceeded(self.usage, self.steps, time.time() + ahead - self.created_at)
        if reached is not None:
            limit, what = reached
            if ahead and limit == "seconds":
                what = f"would pass {budget.seconds:g} s during a retry wait of {ahead:.1f} s"
            raise BudgetExceeded(
                f"Run {self.run_id} stopped before its next {'model ' if model else ''}call: it {what} "
                f"(Budget {limit}). Its {self.steps} steps are kept in the journal; "
                f"{budget.raise_hint(limit, self.run_id)}.",
                budget=limit,
                steps_done=self.steps,
            )

    def _check_price(self, cost: float, model: str) -> None:
        if self.prices is None or self.prices.pricer(model) is None:
            raise UserError(
                f"Budget cost={cost:g} cannot be kept: model {model!r} has no known "
                f"price. Give it one: Runtime(prices={{{model!r}: Price(input=..., "
                "output=...)}) in USD per million tokens."
            )

    async def _stream(self, key: str, model: Model, request: ModelRequest) -> ModelResponse:
        sink = self.sink
        assert sink is not None
        async for item in model.stream(request):
            if isinstance(item, ModelResponse):
                return item
            if isinstance(item, TextDelta):
                sink(ModelDelta(self.run_id, key, clean_text(item.text)))
        raise ModelError(f"Model {model.name} ended its stream without a final response.")

    async def custom_step(
        self, key: str, fn: Callable[[], Awaitable[Any]], site: str, kind: ValueKind = "step"
    ) -> JSON:
        done = self.claim(key, site, nests=True)
        if done is not None:
            self.usage += self.usage_under(key)
            self.replayed(key, kind, done.result)
            return value_of(done)
        started = time.time()
        self.started(key, kind)
        try:
            value = journaled(await fn(), "result", f"Step {key}")
        except (Suspended, DeterminismError):
            raise  # the run waits, or its code is wrong: not a failure of this step
        except Exception as exc:
            await self.failed(key, kind, exc, started)
            if self.cut_off and not isinstance(exc, RunHalted):
                self._raise_if_cut_off(key, exc)
            raise
        await self.completed(key, kind, value_record(kind, value), started)
        return value

    async def gather(self, scope: str, steps: Iterable[Awaitable[T]]) -> list[T]:
        """Await steps (keyed under `scope`) concurrently. Every step runs to its end;
        then the first error is raised, or, if some wait for humans, all their
        interrupts together."""
        tracked = self.divergence.waiting  # else nothing is left to check in this execution
        if tracked:
            self.divergence.forked(scope, 1)
            steps = (thread(scope, step) for step in steps)
        try:
            outcomes = await asyncio.gather(*steps, return_exceptions=True)
        finally:
            if tracked:
                self.divergence.forked(scope, -1)
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
        cut = sorted(k for k in self.cut_off if keys.is_below(k, key))
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
        done = self.claim(key, site)
        if done is not None:
            self.replayed(key, step_kind, done.result)
            return expect(done, Answered).answer
        iid = interrupt_id(key)
        if iid in self.answers:
            answer = validate(iid, self.answers.pop(iid))
            await self.completed(key, step_kind, Answered(answer=answer), time.time(), durable=True)
            self.answered.add(iid)
            return answer
        if key not in self.replay:
            await self.record(key, step_kind, InterruptAsked(payload=payload), time.time())
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
        deps: DepsT = self._ex.deps
        return deps

    @property
    def usage(self) -> Usage:
        return self._ex.usage

    @property
    def idempotency_key(self) -> str:
        ex = self._ex
        if ex.origin_keys:
            origin = ex.origin_keys.get(self.key)
            if origin is not None:
                return origin
        return idempotency_key_of(ex.run_id, self.key)

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
    def step(self, name: str, fn: Callable[[], Awaitable[J]]) -> Coroutine[Any, Any, J]: ...

    @overload
    def step(self, name: str, fn: Callable[[], Awaitable[object]]) -> Coroutine[Any, Any, JSON]: ...

    def step(self, name: str, fn: Callable[[], Awaitable[object]]) -> Coroutine[Any, Any, JSON]:
        return self._ex.custom_step(self._name(name, "step"), fn, _caller())

    def run(self, runnable: Any, input: Any, *, key: str | None = None) -> Coroutine[Any, Any, Any]:
        scope = keys.child(self.key, key) if key else self.key
        member = keys.scope_marker(keys.child(scope, runnable.name))
        self._ex.claim(member, f"ctx.run of {runnable.name!r} at {_caller()}")
        return self._ex.run_child(self._ex, scope, runnable, input)

    def loop_detected(self, kind: str, subject: str, times: int, action: str) -> None:
        sink = self._ex.sink
        if sink is not None:
            sink(LoopGuardTriggered(self._ex.run_id, self.key, kind, subject, times, action))

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


def idempotency_key_of(run_id: str, key: str) -> str:
    """The idempotency key of the step at `key` in run `run_id`: stable across resumes."""
    return hashlib.blake2b(f"{run_id}\x00{key}".encode(), digest_size=16).hexdigest()


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
    """`response` with the lone surrogates of its text and tool calls replaced (see
    `orchestrion._json.clean_text`): no store can hold them."""
    if (response.text is None or response.text.isascii()) and all(
        c.arguments.isascii() and c.id.isascii() and c.name.isascii() for c in response.tool_calls
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
