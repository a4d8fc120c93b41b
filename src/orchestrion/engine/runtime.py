"""`Runtime`: runs, resumes, forks and inspects runs on a store."""

from __future__ import annotations

import asyncio
import builtins
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from orchestrion._json import JSON, dumps_str, to_jsonable
from orchestrion.agent import Agent
from orchestrion.budget import Budget
from orchestrion.engine.breakers import Breakers, BreakerState, MemoryBreakers
from orchestrion.engine.dispatch import run_child
from orchestrion.engine.events import (
    Event,
    InterruptRequested,
    RunFinished,
    RunStarted,
    Sink,
)
from orchestrion.engine.execution import Execution, Suspended
from orchestrion.engine.interrupts import (
    Answer,
    Interrupt,
    answer_to_json,
    interrupt_id,
    normalize_approval,
)
from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.result import RunResult
from orchestrion.engine.store import Store, open_store
from orchestrion.engine.targets import is_runnable, load_target, normalize_target
from orchestrion.errors import (
    AnswerError,
    DeterminismError,
    RunError,
    RunLimitReached,
    RunNotFound,
    RunNotResumable,
    StoreError,
    UserError,
    describe,
)
from orchestrion.messages import ModelResponse, Usage
from orchestrion.models.base import Model
from orchestrion.models.registry import infer_model
from orchestrion.models.with_policy import PolicyModel
from orchestrion.policy import Policy
from orchestrion.pricing import Price, Prices
from orchestrion.runnable import Runnable

Durability = Literal["sync", "async"]
_NO_EDIT: Any = object()


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a run, as `Runtime.history` shows it."""

    seq: int
    key: str
    kind: str
    status: StepStatus
    started_at: float
    ended_at: float
    result: JSON
    attempts: tuple[JSON, ...] = ()
    """The failures of the attempts before the latest one (retries, fallbacks,
    an open circuit), oldest first: each `{"type", "message", "attempt", ...}`."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "seq": self.seq,
            "key": self.key,
            "kind": self.kind,
            "status": self.status.value,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "result": self.result,
            "attempts": list(self.attempts),
        }


class Runtime:
    """Owns a store, the default model and event sinks; runs things durably.

    `durability="async"` (default) writes model and read-tool steps behind the
    run (group-committed) and waits for the commit of write-tool steps,
    answers and status changes; `"sync"` waits for every step's commit.
    """

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        model: Model | str | None = None,
        durability: Durability = "async",
        sinks: Sequence[Sink] = (),
        budget: Budget | None = None,
        prices: Prices | Mapping[str, Price] | None = None,
        policy: Policy | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        if durability not in ("sync", "async"):
            raise UserError(f"durability must be 'sync' or 'async', not {durability!r}.")
        if policy is not None and not isinstance(policy, Policy):
            raise UserError(f"Runtime(policy={policy!r}): give a Policy(...).")
        if policy is not None and any(isinstance(f, Agent) for f in policy.fallback or ()):
            raise UserError(
                "Runtime(policy=...): the runtime's fallback lists models; give fallback "
                "agents to an agent's policy."
            )
        if store is None or isinstance(store, str):
            store = open_store(store)
        self.store: Store = store
        self.default_model = model
        self.durability = durability
        self.sinks = list(sinks)
        self.budget = budget if budget is not None else Budget()
        """The default `Budget` of every run; `run`/`resume`/`fork` take their own. Given
        none, `Budget()`: 100 model calls a run (`Budget.unlimited()` lifts it)."""
        self.prices = prices if isinstance(prices, Prices) else Prices(prices)
        """Prices model responses (`Usage.cost`): the table given, else genai-prices."""
        self.policy = policy
        """The outermost policy of every model and tool call (see `orchestrion.policy`)."""
        self._breakers: Breakers = breakers if breakers is not None else MemoryBreakers()
        self._models: dict[str, Model] = {}
        self._runnables: dict[str, Runnable] = {}
        """The runnable of each run started or resumed here, by run id."""
        self._active: dict[str, asyncio.Task[Any]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        """Set when the run working here under that id stops working."""
        self._cancelling: set[str] = set()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.store.close()

    # -- running -------------------------------------------------------------

    async def run(
        self,
        runnable: Runnable,
        input: JSON = None,
        *,
        run_id: str | None = None,
        deps: Any = None,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[Any]:
        """Run `runnable` (an Agent or pattern) on `input` until it completes,
        fails, or waits for a human.

        With an `idempotency_key` already used, no second run starts: the result
        is the existing run's (awaited if it works in this process; as it stands
        otherwise, e.g. `running` for a run that crashed: resume it)."""
        result, _ = await self._start(
            runnable, input, run_id, target, idempotency_key, deps, budget, self._sink(None)
        )
        return result

    async def _start(
        self,
        runnable: Runnable,
        input: JSON,
        run_id: str | None,
        target: str | None,
        idempotency_key: str | None,
        deps: Any,
        budget: Budget | None,
        sink: Sink | None,
    ) -> tuple[RunResult[Any], bool]:
        """A new run's result, or (with a key already used) the existing run's;
        True when it is the existing one."""
        if idempotency_key is not None:
            if run_id is not None and (working := self._finished.get(run_id)) is not None:
                await working.wait()  # the same submission, its record not written yet
            existing = await self._submitted(idempotency_key, runnable, input)
            if existing is not None:
                return existing, True
        # Reserved before the record exists, so a submission that finds it waits for it.
        with self._working(run_id or _new_id()) as reserved:
            try:
                record = await self._create(runnable, input, reserved, target, idempotency_key)
            except StoreError:
                if idempotency_key is None:
                    raise
                existing = await self._submitted(idempotency_key, runnable, input)
                if existing is None:
                    raise
                return existing, True  # another submission with the key won the race
            return await self._execute(record, runnable, [], {}, deps, sink, False, budget), False

    async def stream(
        self,
        runnable: Runnable,
        input: JSON = None,
        *,
        run_id: str | None = None,
        deps: Any = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[Event]:
        """Run like `run`, yielding events as they happen; the last is `RunFinished`.
        With an `idempotency_key` already used, only the existing run's `RunFinished`."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def work() -> RunResult[Any]:
            sink = self._sink(queue.put_nowait)
            result, existing = await self._start(
                runnable, input, run_id, None, idempotency_key, deps, budget, sink
            )
            if existing:
                queue.put_nowait(RunFinished(result.run_id, result))
            return result

        task = asyncio.create_task(work())
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def run_sync(self, runnable: Runnable, input: JSON = None, **kwargs: Any) -> RunResult[Any]:
        """`run` for code without an event loop."""
        return asyncio.run(self.run(runnable, input, **kwargs))

    async def resume(
        self,
        run_id: str,
        answers: Mapping[str, Answer] | None = None,
        *,
        runnable: Runnable | None = None,
        deps: Any = None,
        budget: Budget | None = None,
    ) -> RunResult[Any]:
        """Continue a run that was interrupted, failed or crashed. `answers` maps
        interrupt ids to `Approve()`, `Reject(reason)` or a free JSON answer."""
        with self._working(run_id):
            record = await self.get(run_id)
            if record.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
                raise RunNotResumable(
                    f"Run {run_id} is {record.status.value}; there is nothing to resume. "
                    f"To run it differently, fork it: `orchestrion fork {run_id} --at STEP`."
                )
            checked = _check_answers(record, answers or {})
            runnable = runnable or self._find_runnable(record)
            entries = await self.store.load(run_id)
            return await self._execute(
                record, runnable, entries, checked, deps, self._sink(None), True, budget
            )

    async def fork(
        self,
        run_id: str,
        *,
        at: str,
        edit: Any = _NO_EDIT,
        new_run_id: str | None = None,
        runnable: Runnable | None = None,
        deps: Any = None,
        budget: Budget | None = None,
    ) -> RunResult[Any]:
        """A new run reusing the journal of `run_id` before step `at`, with `edit`
        as that step's result if given, continuing live from there."""
        record = await self.get(run_id)
        entries = await self.store.load(run_id)
        index = next((i for i, e in enumerate(entries) if e.key == at), None)
        if index is None:
            keys = list(dict.fromkeys(e.key for e in entries))
            raise UserError(
                f"Run {run_id} has no step {at!r}. Its steps: {keys[:20]}"
                f"{' ...' if len(keys) > 20 else ''} (see `orchestrion show {run_id}`)."
            )
        prefix = [_renumber(e, i) for i, e in enumerate(entries[:index])]
        kind = entries[index].kind
        answers: dict[str, JSON] = {}
        if edit is not _NO_EDIT and kind in ("approval", "interrupt"):
            # Validated where the run asks for it, like any answer, before it is journaled.
            iid = interrupt_id(at)
            answers[iid] = (
                normalize_approval(iid, edit) if kind == "approval" else answer_to_json(edit)
            )
        elif edit is not _NO_EDIT:
            now = time.time()
            prefix.append(
                Entry(index, at, kind, StepStatus.COMPLETED, _edited(kind, at, edit), now, now)
            )
        runnable = runnable or self._find_runnable(record)
        now = time.time()
        fork = RunRecord(
            id=new_run_id or _new_id(),
            name=record.name,
            status=RunStatus.RUNNING,
            input=record.input,
            target=record.target,
            created_at=now,
            updated_at=now,
            parent_id=run_id,
            fork_at=at,
        )
        with self._working(fork.id):
            await self.store.create_run(fork, prefix)
            self._runnables[fork.id] = runnable
            try:
                return await self._execute(
                    fork, runnable, prefix, answers, deps, self._sink(None), True, budget
                )
            except AnswerError as exc:
                await self.store.update_run(fork.id, status=RunStatus.FAILED, error=describe(exc))
                raise

    async def cancel(self, run_id: str) -> None:
        """Stop a run: its task if it works in this process; its status in any case."""
        record = await self.get(run_id)
        task = self._active.get(run_id)
        if task is not None:
            self._cancelling.add(run_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif record.status is not RunStatus.COMPLETED:
            await self.store.update_run(run_id, status=RunStatus.CANCELLED, usage=record.usage)

    # -- inspecting ------------------------------------------------------------

    async def breakers(self) -> builtins.list[BreakerState]:
        """The circuit breakers of this runtime's runs and their states."""
        return await self._breakers.states()

    async def get(self, run_id: str) -> RunRecord:
        record = await self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id, self.store.url)
        return record

    async def list(self, *, status: RunStatus | None = None, limit: int = 50) -> list[RunRecord]:
        return await self.store.list_runs(status=status, limit=limit)

    async def history(self, run_id: str) -> builtins.list[StepInfo]:
        """Every step of a run in journal order, each at its latest state."""
        await self.get(run_id)
        steps: dict[str, StepInfo] = {}
        for e in await self.store.load(run_id):
            first = steps.get(e.key)
            seq, started = (first.seq, first.started_at) if first else (e.seq, e.started_at)
            attempts = first.attempts if first else ()
            if first is not None and first.status is StepStatus.FAILED:
                attempts = (*attempts, first.result)
            steps[e.key] = StepInfo(
                seq, e.key, e.kind, e.status, started, e.ended_at, e.result, attempts
            )
        return sorted(steps.values(), key=lambda s: s.seq)

    # -- internals -------------------------------------------------------------

    async def _submitted(self, key: str, runnable: Runnable, input: JSON) -> RunResult[Any] | None:
        """The result of the run submitted with idempotency key `key`, if there is one."""
        record = await self.store.find_run(idempotency_key=key)
        if record is None:
            return None
        if record.name != getattr(runnable, "name", None) or record.input != _jsonable(input):
            raise UserError(
                f"Idempotency key {key!r} was used for run {record.id} ({record.name!r} on "
                f"{_summary(record.input)}); this call runs {getattr(runnable, 'name', runnable)!r} "
                f"on {_summary(_jsonable(input))}. A new request needs a new key."
            )
        finished = self._finished.get(record.id)
        if finished is not None:
            await finished.wait()
            record = await self.get(record.id)
        return result_of(record)

    async def _create(
        self,
        runnable: Runnable,
        input: JSON,
        run_id: str | None,
        target: str | None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        if not is_runnable(runnable):
            raise UserError(
                f"Cannot run {runnable!r}: pass an Agent or a pattern (an object with a name "
                "and an async invoke(ctx, input))."
            )
        try:
            input = to_jsonable(input)
        except TypeError as exc:
            raise UserError(f"Run input must be JSON data (str, dict, list, ...): {exc}") from None
        if isinstance(runnable, Agent):
            self._model_for(
                runnable.model, runnable.name
            )  # a missing model fails before the run exists
        now = time.time()
        record = RunRecord(
            id=run_id or _new_id(),
            name=runnable.name,
            status=RunStatus.RUNNING,
            input=input,
            target=normalize_target(target) if target else None,
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
        )
        await self.store.create_run(record)
        self._runnables[record.id] = runnable
        return record

    @contextmanager
    def _working(self, run_id: str) -> Iterator[str]:
        """Reserve `run_id` for the current task before any await, so two resumes
        of one run in this process cannot both execute it."""
        if run_id in self._active:
            raise RunNotResumable(
                f"Run {run_id} is already working in this process: wait for it to finish "
                f"or stop it with `runtime.cancel({run_id!r})`."
            )
        task = asyncio.current_task()
        assert task is not None, "runs work inside an asyncio task"
        self._active[run_id] = task
        finished = self._finished[run_id] = asyncio.Event()
        try:
            yield run_id
        finally:
            del self._active[run_id]
            del self._finished[run_id]
            finished.set()

    def _sink(self, extra: Sink | None) -> Sink | None:
        sinks = [*self.sinks, extra] if extra is not None else self.sinks
        if not sinks:
            return None
        if len(sinks) == 1:
            return sinks[0]

        def fan_out(event: Event) -> None:
            for sink in sinks:
                sink(event)

        return fan_out

    def _model_for(self, model: Model | str | None, agent: str) -> Model:
        model = model or self.default_model or os.environ.get("ORCHESTRION_MODEL")
        if model is None:
            raise UserError(
                f"Agent {agent!r} has no model, and the runtime has no default: pass model= to "
                "the Agent or the Runtime, or set ORCHESTRION_MODEL (e.g. openai:gpt-4.1-mini)."
            )
        if isinstance(model, PolicyModel) and isinstance(model.model, str):
            return PolicyModel(self._model_for(model.model, agent), model.policy)
        if not isinstance(model, str):
            return model
        cached = self._models.get(model)
        if cached is None:
            cached = self._models[model] = infer_model(model)
        return cached

    def _find_runnable(self, record: RunRecord) -> Runnable:
        known = self._runnables.get(record.id) or self._runnables.get(record.parent_id or "")
        if known is not None:
            return known
        if record.target:
            runnable = load_target(record.target)
            self._runnables[record.id] = runnable
            return runnable
        raise RunNotResumable(
            f"Run {record.id} ({record.name!r}) was started from Python without a target, and "
            "this runtime has not run it: pass runnable= to resume/fork, or start runs with "
            "target='module:attr' (the CLI does)."
        )

    async def _execute(
        self,
        record: RunRecord,
        runnable: Runnable,
        entries: builtins.list[Entry],
        answers: dict[str, JSON],
        deps: Any,
        sink: Sink | None,
        resumed: bool,
        budget: Budget | None,
    ) -> RunResult[Any]:
        ex = Execution(
            run_id=record.id,
            store=self.store,
            entries=entries,
            sink=sink,
            sync=self.durability == "sync",
            answers=answers,
            deps=deps,
            model_for=self._model_for,
            run_child=run_child,
            budget=budget if budget is not None else self.budget,
            created_at=record.created_at,
            prices=self.prices,
            policy=self.policy,
            breakers=self._breakers,
        )
        if resumed:
            # Pending interrupts stay listed until the run suspends again or ends,
            # so a crash during this resume leaves them answerable.
            await self.store.update_run(
                record.id, status=RunStatus.RUNNING, pending=record.pending, usage=record.usage
            )
        if sink is not None:
            sink(RunStarted(record.id, record.name, resumed))
        result = await self._work(ex, record, runnable)
        if sink is not None:
            for interrupt in result.interrupts:
                sink(InterruptRequested(record.id, interrupt))
            sink(RunFinished(record.id, result))
        return result

    async def _work(self, ex: Execution, record: RunRecord, runnable: Runnable) -> RunResult[Any]:
        store, run_id = self.store, record.id
        try:
            value = await run_child(ex, "", runnable, record.input)
            output = to_jsonable(value)
            if ex.answers:
                raise DeterminismError(
                    f"Run {run_id} finished without reaching the interrupts answered "
                    f"({sorted(ex.answers)}): the code differs from the code that started it."
                )
        except Suspended as suspended:
            pending = [i.to_json() for i in suspended.interrupts]
            await store.update_run(
                run_id, status=RunStatus.INTERRUPTED, pending=pending, usage=_usage(ex)
            )
            return RunResult(
                run_id,
                RunStatus.INTERRUPTED,
                interrupts=tuple(suspended.interrupts),
                usage=ex.usage,
            )
        except AnswerError:
            # Answers validated before the bad one were journaled: they no longer wait.
            pending = [p for p in record.pending if p["id"] not in ex.answered]
            await store.update_run(
                run_id, status=RunStatus.INTERRUPTED, pending=pending, usage=record.usage
            )
            raise
        except RunLimitReached as exc:
            partial = _partial(ex.outputs)
            error = {**describe(exc), "partial": partial}
            await store.update_run(run_id, status=RunStatus.STOPPED, error=error, usage=_usage(ex))
            return RunResult(
                run_id, RunStatus.STOPPED, error=error, partial=partial, usage=ex.usage
            )
        except RunError as exc:
            error = describe(exc)
            await store.update_run(run_id, status=RunStatus.FAILED, error=error, usage=_usage(ex))
            return RunResult(run_id, RunStatus.FAILED, error=error, usage=ex.usage)
        except asyncio.CancelledError:
            # Only `Runtime.cancel` ends a run for good. Any other cancellation (Ctrl-C,
            # a caller's timeout, shutdown) is a crash: the run stays resumable.
            if run_id in self._cancelling:
                self._cancelling.discard(run_id)
                await asyncio.shield(
                    store.update_run(run_id, status=RunStatus.CANCELLED, usage=_usage(ex))
                )
            raise
        except BaseException as exc:
            # A bug or a configuration mistake: keep the store honest, then surface it.
            if not isinstance(exc, StoreError):
                await store.update_run(
                    run_id, status=RunStatus.FAILED, error=describe(exc), usage=_usage(ex)
                )
            raise
        await store.update_run(run_id, status=RunStatus.COMPLETED, output=output, usage=_usage(ex))
        return RunResult(run_id, RunStatus.COMPLETED, value=value, usage=ex.usage)


def result_of(record: RunRecord) -> RunResult[Any]:
    """A run's result as its record stands (its output as journaled JSON)."""
    error = record.error if isinstance(record.error, dict) else None
    return RunResult(
        record.id,
        record.status,
        value=record.output,
        error=error,
        interrupts=tuple(Interrupt.from_json(p) for p in record.pending),
        usage=Usage(*record.usage),
        partial=dict((error or {}).get("partial") or {}),
    )


def _jsonable(input: JSON) -> JSON:
    try:
        return to_jsonable(input)
    except TypeError:
        return input


def _summary(value: JSON, width: int = 60) -> str:
    text = dumps_str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _new_id() -> str:
    return secrets.token_hex(8)


def _partial(outputs: dict[str, Any]) -> dict[str, JSON]:
    """The outputs of the members that finished, outermost only: a finished
    member's own members are part of its output."""
    outer = set(outputs)
    return {
        key: to_jsonable(value)
        for key, value in outputs.items()
        if not any(key[:i] in outer for i, c in enumerate(key) if c == "/")
    }


def _usage(ex: Execution) -> list[JSON]:
    return ex.usage.to_json()


def _renumber(entry: Entry, seq: int) -> Entry:
    return entry._replace(seq=seq)


def _edited(kind: str, key: str, edit: Any) -> JSON:
    """The journaled form of an edited step result, checked for its kind."""
    if kind == "model":
        if isinstance(edit, ModelResponse):
            return edit.to_json()
        if isinstance(edit, str):
            return ModelResponse(text=edit).to_json()
        try:
            return ModelResponse.from_json(edit).to_json()
        except (TypeError, KeyError, AttributeError) as exc:
            raise UserError(
                f"Edit for model step {key!r} must be a ModelResponse, a str or its JSON form: {exc}"
            ) from None
    if kind == "tool":
        if isinstance(edit, str):
            return {"content": edit, "is_error": False}
        if isinstance(edit, dict) and isinstance(edit.get("content"), str):
            return {"content": edit["content"], "is_error": bool(edit.get("is_error", False))}
        raise UserError(
            f"Edit for tool step {key!r} must be the text the model reads, or "
            '{"content": str, "is_error": bool}.'
        )
    return to_jsonable(edit)


def _check_answers(record: RunRecord, answers: Mapping[str, Answer]) -> dict[str, JSON]:
    """Check answers against the run's pending interrupts before anything runs."""
    pending = {i["id"]: Interrupt.from_json(i) for i in record.pending}
    by_key = {i.key: i for i in pending.values()}
    checked: dict[str, JSON] = {}
    for given, answer in answers.items():
        interrupt = pending.get(given) or by_key.get(given)
        if interrupt is None:
            ids = sorted(pending) or "none"
            raise AnswerError(
                f"Run {record.id} has no pending interrupt {given!r}. Pending: {ids} "
                f"(see `orchestrion show {record.id}`)."
            )
        if interrupt.kind == "approval":
            checked[interrupt.id] = normalize_approval(interrupt.id, answer)
        else:
            checked[interrupt.id] = answer_to_json(answer)
    return checked
