"""`Runtime`: runs, resumes, forks and inspects runs on a store."""

from __future__ import annotations

import asyncio
import builtins
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from functools import partial
from secrets import token_hex
from typing import TYPE_CHECKING, Any, Literal, overload

from typing_extensions import TypeVar

from orchestrion._json import JSON, JSONInput, as_object
from orchestrion.agent import Agent
from orchestrion.budget import Budget
from orchestrion.engine.accounts import Accounts
from orchestrion.engine.answers import check_answers, not_yet_answered
from orchestrion.engine.breakers import Breakers, BreakerState, breakers_for
from orchestrion.engine.dispatch import run_child
from orchestrion.engine.events import Event, RunFinished, Sink, events_for, fan_out
from orchestrion.engine.execution import Execution, RunEnv
from orchestrion.engine.forks import NO_EDIT, fork_prefix, fork_record
from orchestrion.engine.interrupts import Answer, Approve, Reject
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus
from orchestrion.engine.leases import Leases, cancel_elsewhere, claim_within, quietly
from orchestrion.engine.logs import logged
from orchestrion.engine.outcome import work
from orchestrion.engine.queue import (
    DEFAULT_QUEUE,
    given_answers,
    kept_and_given,
    put_back,
    refuse_start,
    requeue,
    runnable_of,
    submit,
    submit_member,
    submitted_by,
)
from orchestrion.engine.rate_limits import Limits, limits_for
from orchestrion.engine.replay_log import ReplayLog, StepsStopped
from orchestrion.engine.result import RunResult, StepInfo, described, result_of, step_history
from orchestrion.engine.runs import (
    Working,
    check_settings,
    find_submitted,
    new_record,
    register_given,
    tracing_for,
)
from orchestrion.engine.store import DEFAULT_LEASE_TTL, Store, open_store
from orchestrion.engine.targets import find_runnable, remember
from orchestrion.errors import (
    AnswerError,
    LeaseLost,
    RunNotFound,
    RunNotResumable,
    StoreError,
    UserError,
)
from orchestrion.models.base import Model
from orchestrion.models.registry import resolve_model
from orchestrion.policy import Policy
from orchestrion.pricing import Price, Prices
from orchestrion.redact import SupportsSecret
from orchestrion.runnable import Runnable, Workflow
from orchestrion.telemetry.instrument import Instrumentation, instrumentation

if TYPE_CHECKING:
    from orchestrion.engine.metrics import Metrics
    from orchestrion.engine.tracing import Tracing

Durability = Literal["sync", "async"]
DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT", default=Any)
"""A run's output type; `Any` where no runnable is given (`resume(run_id)`)."""


class Runtime:
    """Owns a store, the default model and event sinks; runs things durably.

    `durability="async"` (default) writes model and read-tool steps behind the run
    (group-committed) and waits for the commit of write-tool steps, answers and
    status changes (fsync'd on SQLite); `"sync"` waits for every step's commit.

    A run works here only while this runtime holds its lease in the store (`owner`,
    renewed every third of `lease_ttl` seconds): `run`, `resume` and `fork` claim it
    before anything executes, so another process (a second `resume --approve`, a
    worker) is refused, and a process that dies leaves a lease that ends after
    `lease_ttl`, after which anyone may resume the run.

    `breakers` and `rate_limits` keep the state of circuit breakers and rate limits
    (default: the store's, shared by every worker on it, where it has them; else this
    process's). `secrets` are values to keep out of journals, events, error texts and
    what models read (`orchestrion.register_secret`, for the process).

    `instrument=True` (or an `Instrumentation`) traces the runs with OpenTelemetry
    (see `engine.tracing`); not given, the `ORCHESTRION_INSTRUMENT` environment
    variable decides (`1`: on). `metrics` (`Metrics.of(registry)`) counts runs,
    steps, tokens and costs, retries and the rest in a Prometheus registry."""

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
        rate_limits: Limits | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        secrets: Iterable[str | SupportsSecret | None] = (),
        instrument: bool | Instrumentation | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        register_given(secrets)
        settings = instrumentation(instrument)
        check_settings(lease_ttl, durability, policy)
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
        self._env: RunEnv | None = None  # the last run's: the next with the same deps shares it
        self._breakers: Breakers = breakers_for(store, breakers)
        self._limits: Limits = limits_for(store, rate_limits)
        self._models: dict[str, Model] = {}
        self._runnables: dict[str, Runnable] = {}
        """The runnable of each run started or resumed here, by run id."""
        self._targets: dict[str, Runnable] = {}  # of the queued runs worked on here, by target
        self._active: dict[str, asyncio.Task[Any]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        """Set when the run working here under that id stops working."""
        self._cancelling: set[str] = set()
        self.lease_ttl = float(lease_ttl)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{token_hex(3)}"
        """This runtime's name in the leases it holds: host, process id and a nonce."""
        self._leases = Leases(store, self.lease_ttl)
        self.tracing: Tracing | None = None if settings is None else tracing_for(settings)
        """Makes the spans of this runtime's runs (`instrument=`), or None: not traced."""
        self.metrics = metrics
        """Counts this runtime's runs, steps, tokens, ... (`engine.metrics`), or None."""

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._leases.stop()
        await self.store.close()

    # -- running -------------------------------------------------------------

    # The overloads of `run`, `stream`, `run_sync`, `resume` and `fork` type the output
    # as the runnable's, and check `deps`: an agent whose tools read a `RunContext[Bank]`
    # needs a `Bank`; one that reads none, and a workflow (opaque to checkers), take any.

    @overload
    async def run(
        self,
        runnable: Agent[None, OutputT] | Workflow[OutputT],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    async def run(
        self,
        runnable: Agent[DepsT, OutputT],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: DepsT,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]: ...

    async def run(
        self,
        runnable: Runnable,
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
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
        input: JSONInput,
        run_id: str | None,
        target: str | None,
        idempotency_key: str | None,
        deps: object,
        budget: Budget | None,
        sink: Sink | None,
    ) -> tuple[RunResult[Any], bool]:
        """A new run's result, or (with a key already used) the existing run's;
        True when it is the existing one."""
        while idempotency_key is not None:
            if run_id is not None and run_id in self._active:
                await self._stopped_working(run_id)  # the same submission, not written yet
            existing = await self._submitted(idempotency_key, runnable, input)
            if existing is not None:
                return existing, True
            if run_id is None or run_id not in self._active:
                break  # else reserved while the key was looked up: wait for it, look again
        # Reserved (no await since the check) before the record exists: a repeat waits for it.
        with self._working(run_id or token_hex(8)) as reserved:
            try:
                record, lease = await self._create(
                    runnable, input, reserved, target, idempotency_key
                )
            except StoreError:
                if idempotency_key is None:
                    raise
                existing = await self._submitted(idempotency_key, runnable, input)
                if existing is None:
                    raise
                return existing, True  # another submission with the key won the race
            result = await self._execute(record, lease, runnable, [], {}, deps, sink, False, budget)
            return result, False

    @overload
    def stream(
        self,
        runnable: Agent[None, Any] | Workflow[Any],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[Event]: ...

    @overload
    def stream(
        self,
        runnable: Agent[DepsT, Any],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: DepsT,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[Event]: ...

    async def stream(
        self,
        runnable: Runnable,
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
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

    @overload
    def run_sync(
        self,
        runnable: Agent[None, OutputT] | Workflow[OutputT],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    def run_sync(
        self,
        runnable: Agent[DepsT, OutputT],
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: DepsT,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]: ...

    def run_sync(
        self,
        runnable: Runnable,
        input: JSONInput = None,
        *,
        run_id: str | None = None,
        deps: object = None,
        target: str | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> RunResult[Any]:
        """`run` for code without an event loop."""
        return asyncio.run(
            self.run(
                runnable,
                input,
                run_id=run_id,
                deps=deps,
                target=target,
                budget=budget,
                idempotency_key=idempotency_key,
            )
        )

    @overload
    async def resume(
        self,
        run_id: str,
        answers: Mapping[str, Answer] | None = None,
        *,
        runnable: Agent[None, OutputT] | Workflow[OutputT] | None = None,
        deps: object = None,
        budget: Budget | None = None,
        wait: float = 0.0,
    ) -> RunResult[OutputT]: ...

    @overload
    async def resume(
        self,
        run_id: str,
        answers: Mapping[str, Answer] | None = None,
        *,
        runnable: Agent[DepsT, OutputT],
        deps: DepsT,
        budget: Budget | None = None,
        wait: float = 0.0,
    ) -> RunResult[OutputT]: ...

    async def resume(
        self,
        run_id: str,
        answers: Mapping[str, Answer] | None = None,
        *,
        runnable: Runnable | None = None,
        deps: object = None,
        budget: Budget | None = None,
        wait: float = 0.0,
    ) -> RunResult[Any]:
        """Continue a run that was interrupted, failed or crashed. `answers` maps
        interrupt ids to `Approve()`, `Reject(reason)` or a free JSON answer.

        Given `runnable=`, the result is typed as that runnable's output (and
        `deps` are checked as for `run`); without it the runnable is found from
        the run's record, which no type checker sees: a `RunResult[Any]`.

        The run is claimed first: while another process holds it, `RunBusy` is
        raised at once, or after waiting up to `wait` seconds for it to let go.
        Answers are checked against the run as it stands once claimed, so of two
        resumes answering the same interrupt one executes and the other is
        refused before anything runs."""
        with self._working(run_id):
            record = await claim_within(self.store, run_id, self.owner, self.lease_ttl, wait)
            lease = record.lease
            assert lease is not None
            try:
                if record.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
                    raise RunNotResumable(
                        f"Run {run_id} is {record.status.value}; there is nothing to resume. "
                        f"To run it differently, fork it: `orchestrion fork {run_id} --at STEP`."
                    )
                checked = kept_and_given(record, check_answers(record, answers or {}))
                runnable = runnable or find_runnable(record, self._runnables)
                entries = await self.store.load(run_id)
                checked = not_yet_answered(run_id, entries, checked)
            except BaseException:
                await quietly(self.store.release(run_id, lease.token))
                raise
            return await self._execute(
                record, lease, runnable, entries, checked, deps, self._sink(None), True, budget
            )

    @overload
    async def fork(
        self,
        run_id: str,
        *,
        at: str,
        edit: Approve | Reject | JSONInput = NO_EDIT,
        new_run_id: str | None = None,
        runnable: Agent[None, OutputT] | Workflow[OutputT] | None = None,
        deps: object = None,
        budget: Budget | None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    async def fork(
        self,
        run_id: str,
        *,
        at: str,
        edit: Approve | Reject | JSONInput = NO_EDIT,
        new_run_id: str | None = None,
        runnable: Agent[DepsT, OutputT],
        deps: DepsT,
        budget: Budget | None = None,
    ) -> RunResult[OutputT]: ...

    async def fork(
        self,
        run_id: str,
        *,
        at: str,
        edit: Approve | Reject | JSONInput = NO_EDIT,
        new_run_id: str | None = None,
        runnable: Runnable | None = None,
        deps: object = None,
        budget: Budget | None = None,
    ) -> RunResult[Any]:
        """A new run reusing the journal of `run_id` before step `at`, with `edit`
        as that step's result if given, continuing live from there. Typed as
        `resume` is: by `runnable=` when given, else a `RunResult[Any]`."""
        record = await self.get(run_id)
        prefix, answers = fork_prefix(run_id, await self.store.load(run_id), at, edit)
        runnable = runnable or find_runnable(record, self._runnables)
        fork = fork_record(record, at, new_run_id)
        with self._working(fork.id):
            lease = await self._traced_create(fork, runnable, prefix)  # a fork: traced or not
            assert lease is not None
            remember(self._runnables, fork.id, runnable)
            try:
                return await self._execute(
                    fork, lease, runnable, prefix, answers, deps, self._sink(None), True, budget
                )
            except AnswerError as exc:
                # The edit was the bad answer: the fork is failed, not left waiting for one.
                await self.store.update_run(
                    fork.id, status=RunStatus.FAILED, error=described(exc), token=lease.token
                )
                raise

    # -- queues and workers (see `engine.queue`, `engine.worker`) ---------------------

    async def submit(
        self,
        target: str,
        input: JSONInput = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Queue a run of `target` (`module:attr` or `path/to/file.py:attr`) on
        `input` for a worker (`orchestrion worker`) and return its id at once;
        `priority`: higher first. With an `idempotency_key` already used, the id
        of the run submitted with it. `traceparent` (W3C) is the span the run's
        traces hang under; else, when traced, the span current here."""
        return await submit(
            self.store,
            target,
            input,
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
            run_id=run_id,
            tracing=self.tracing,
            traceparent=traceparent,
        )

    async def requeue(
        self, run_id: str, answers: Mapping[str, Answer] | None = None, *, wait: float = 0.0
    ) -> RunRecord:
        """Put a submitted run that waits for humans (or failed, or stopped) back on
        its queue, with `answers` to its interrupts, for any worker to continue; its
        record as it goes back. Answers are checked as `resume` checks them."""
        if run_id in self._active:
            raise RunNotResumable(f"Run {run_id} is working in this process: wait for it.")
        record = await claim_within(self.store, run_id, self.owner, self.lease_ttl, wait)
        await requeue(self.store, record, answers or {})
        return await self.get(run_id)

    async def work_on(
        self, record: RunRecord, *, deps: object = None, budget: Budget | None = None
    ) -> RunResult[Any]:
        """Continue a run of a queue that this runtime has just claimed (a worker's
        `claim_next`): from its journal, with the answers kept in its record. A run
        that cannot start (its code does not import, a kept answer contradicts the
        journal) is failed (or left waiting) with the reason, under the claim."""
        lease = record.lease
        if lease is None or lease.owner != self.owner:
            raise UserError(f"Run {record.id} is not claimed by this runtime ({self.owner}).")
        if record.id in self._active:
            await quietly(self.store.release(record.id, lease.token))
            raise RunNotResumable(f"Run {record.id} is already working in this process.")
        with self._working(record.id):
            try:
                runnable = await runnable_of(record, self._targets)
                # A queued run claimed before any step: no journal to read (no one
                # else may append to it under this claim's token).
                entries = [] if record.journal_size == 0 else await self.store.load(record.id)
                answers = not_yet_answered(record.id, entries, given_answers(record))
            except Exception as exc:
                await refuse_start(self.store, record, exc)
                raise
            return await self._execute(
                record, lease, runnable, entries, answers, deps, self._sink(None), True, budget
            )

    def stop_steps(self, run_ids: Iterable[str]) -> None:
        """These runs go back to their queue at their next step (steps under way finish)."""
        self._leases.stop_steps(run_ids)

    def idle_runs(self, longer_than: float) -> builtins.list[str]:
        """The runs working here that have only waited (`wait=True` steps) that long."""
        return self._leases.idle(longer_than)

    async def cancel(self, run_id: str) -> RunRecord:
        """Stop a run for good and return its record as it ends.

        A run working in this process stops at once. One working elsewhere is taken
        from its owner: the lease passes to this runtime (a new fencing token), so the
        owner's next step is refused by the store before it writes anything, and the
        status stays `cancelled`. A completed run is left as it is. The runs it
        queued (`ctx.submit`) are cancelled with it."""
        record = await self._cancel_one(run_id)
        for submitted in submitted_by(await self.store.load(run_id)):
            await self.cancel(submitted)
        return record

    async def _cancel_one(self, run_id: str) -> RunRecord:
        task = self._active.get(run_id)
        if task is not None:
            self._cancelling.add(run_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._cancelling.discard(run_id)
            current = await self.get(run_id)
            if current.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
                return current
            # Not working on the run yet (a resume waiting, say): take it from its owner.
        await cancel_elsewhere(self.store, run_id, self.owner, self.lease_ttl)
        return await self.get(run_id)

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
        return step_history(await self.store.load(run_id))

    # -- internals -------------------------------------------------------------

    async def _submitted(
        self, key: str, runnable: Runnable, input: JSONInput
    ) -> RunResult[Any] | None:
        """The result of the run submitted with idempotency key `key`, if there is one."""
        record = await find_submitted(self.store, key, runnable, input)
        if record is None:
            return None
        if record.id in self._active:
            await self._stopped_working(record.id)
            record = await self.get(record.id)
        return result_of(record)

    async def _create(
        self,
        runnable: Runnable,
        input: JSONInput,
        run_id: str | None,
        target: str | None,
        key: str | None = None,
    ) -> tuple[RunRecord, Lease]:
        record = new_record(
            runnable, input, run_id, status=RunStatus.RUNNING, target=target, idempotency_key=key
        )
        if isinstance(runnable, Agent):  # a missing model fails before the run exists
            self._model_for(runnable.model, runnable.name)
        if self.tracing is None:
            lease = await self.store.create_run(record, owner=self.owner, ttl=self.lease_ttl)
        else:
            lease = await self._traced_create(record, runnable)
        assert lease is not None
        remember(self._runnables, record.id, runnable)
        return record, lease

    async def _traced_create(
        self, record: RunRecord, runnable: Runnable, entries: Sequence[Entry] = ()
    ) -> Lease | None:
        """Write a run that starts here, claimed by this runtime, hung under its trace
        (when traced)."""
        if self.tracing is None:
            return await self.store.create_run(
                record, entries, owner=self.owner, ttl=self.lease_ttl
            )
        self.tracing.begin(record, runnable)
        try:
            return await self.store.create_run(
                record, entries, owner=self.owner, ttl=self.lease_ttl
            )
        except BaseException:
            self.tracing.abandon(record.id)
            raise

    def _working(self, run_id: str) -> Working:
        """Reserve `run_id` for the current task before any await, so two resumes
        of one run in this process cannot both execute it."""
        return Working(self._active, self._finished, run_id)

    async def _stopped_working(self, run_id: str) -> None:
        """Wait until the run working here under `run_id` stops working here."""
        await self._finished.setdefault(run_id, asyncio.Event()).wait()

    def _sink(self, extra: Sink | None) -> Sink | None:
        return fan_out([*self.sinks, extra] if extra is not None else self.sinks)

    def _model_for(self, model: Model | str | None, agent: str) -> Model:
        return resolve_model(model, agent, default=self.default_model, cache=self._models)

    async def _execute(
        self,
        record: RunRecord,
        lease: Lease,
        runnable: Runnable,
        entries: builtins.list[Entry],
        answers: dict[str, JSON],
        deps: Any,
        sink: Sink | None,
        resumed: bool,
        budget: Budget | None,
    ) -> RunResult[Any]:
        run_id = record.id
        log = ReplayLog(
            run_id,
            entries,
            store=self.store,
            sync=self.durability == "sync",
            token=lease.token,
            fence=lambda: self._leases.confirm(run_id, lease.token),
        )
        accounts = Accounts(
            log,
            budget=budget if budget is not None else self.budget,
            prices=self.prices,
            created_at=record.created_at,
        )
        env = self._env
        if (
            env is None
            or env.deps is not deps
            or env.policy is not self.policy
            or env.metrics is not self.metrics
        ):
            # Runs with the same deps share one (the usual case: every run).
            env = self._env = RunEnv(
                deps=deps,
                model_for=self._model_for,
                run_child=run_child,
                policy=self.policy,
                breakers=self._breakers,
                limits=self._limits,
                submit=partial(submit_member, self.store, self._targets, self.tracing),
                tracing=self.tracing,
                metrics=self.metrics,
            )
        events = logged(events_for(run_id, sink), run_id)
        if self.metrics is not None:
            events = self.metrics.events(events, (str(as_object(i)["id"]) for i in record.pending))
        span = None
        if self.tracing is not None:
            events = self.tracing.events(events)
            span = self.tracing.execution(record, runnable, resumed)
        ex = Execution(env, log, accounts, events, answers)
        self._leases.hold(lease, log)
        try:
            try:
                trace = None if span is None else span.new_trace
                if (resumed and record.status is not RunStatus.RUNNING) or trace is not None:
                    # Pending interrupts stay listed until the run suspends again or
                    # ends, so a crash during this resume leaves them answerable. (A
                    # worker's claim has marked its run running already.)
                    await self.store.update_run(
                        run_id,
                        status=RunStatus.RUNNING,
                        pending=record.pending,
                        usage=record.usage,
                        token=lease.token,
                        trace=trace,
                    )
                events.run_started(record.name, resumed)
                working = work(ex, record, runnable, self._end, self._cancelling)
                result = await (working if span is None else span.around(working))
            except LeaseLost:
                # Cancelled from another process (or taken over after this one stalled
                # past its lease): the store says how the run stands.
                current = await self.store.get_run(run_id)
                if current is None or current.status is not RunStatus.CANCELLED:
                    raise
                result = result_of(current)
            except StepsStopped:  # its worker is stopping: back on the queue, as it stands
                status = await put_back(self.store, record, lease, accounts.usage.to_json())
                self._leases.released(run_id)
                result = RunResult(run_id, status, usage=accounts.usage)
        finally:
            if span is not None:  # if `around` did not end it (the start was not written)
                span.end(sys.exc_info()[1])
            await self._leases.let_go(run_id)
        events.run_finished(result)
        return result

    async def _end(
        self,
        ex: Execution,
        status: RunStatus,
        *,
        output: JSON = None,
        error: JSON = None,
        pending: builtins.list[JSON] | None = None,
        usage: builtins.list[JSON] | None = None,
    ) -> None:
        """Write the run's new status under its lease, and let the lease go."""
        await self.store.update_run(
            ex.run_id,
            status=status,
            output=output,
            error=error,
            pending=pending,
            usage=ex.accounts.usage.to_json() if usage is None else usage,
            token=ex.log.token,
            release=True,
        )
        self._leases.released(ex.run_id)
