"""`Worker`: works on the runs of some queues of a store, many processes at once.

Each run is claimed under a lease (`RunQueue.claim_next`), kept renewed by the
runtime's heartbeat, and every write carries the lease's fencing token: a run is
worked on by one worker at a time, and a worker that stalled past its lease
cannot write another step. A worker that dies leaves leases that end; any worker
on those queues then takes the runs over from their journals. Idle workers wait
in `RunQueue.wait_for_runs` (LISTEN/NOTIFY on PostgreSQL).

A worker whose slots are all taken puts back a run that has only been waiting
(`ctx.step(..., wait=True)`) for `poll` seconds when another run can be claimed,
and works on that one instead: runs that wait on each other (a peer network and
its agents) never starve for a slot that the waiting ones hold.

`stop()` (SIGTERM in `orchestrion worker`) drains: no new claim; each run stops
before its next step (steps under way finish and are journaled) and goes back to
its queue; after `grace` seconds, runs still in a step are cancelled as a crash
would stop them (their leases released, so another worker continues at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from orchestrion.engine.journal import RunRecord
from orchestrion.engine.queue import (
    DEFAULT_QUEUE,
    RunCounts,
    RunQueue,
    check_queue,
    queue_of,
    refuse_start,
)
from orchestrion.engine.runtime import Runtime
from orchestrion.errors import RunError, StoreError, UserError

if TYPE_CHECKING:
    from orchestrion.engine.metrics import Metrics

log = logging.getLogger("orchestrion.worker")

CLAIMS_AT_ONCE = 50
"""The most runs one claim takes (one statement): a worker fills its free slots in
a few round trips rather than one per run."""


class Worker:
    """Works on runs of `queues` of `runtime.store`, at most `concurrency` at once.

    `deps` is given to every run (a bank client, say). `poll` is how often, in
    seconds, an idle worker looks for runs whose lease ended (a dead worker's:
    nothing announces those); `grace` how long `stop()` lets runs reach a step
    boundary. With the runtime's `metrics`, the worker counts its claims and
    takeovers and the runs in flight, and every `metrics_poll` seconds the store's
    runs queued, running and waiting for humans on its queues.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = 10,
        deps: object = None,
        poll: float = 1.0,
        grace: float = 20.0,
        max_attempts: int = 5,
        metrics_poll: float = 5.0,
    ) -> None:
        if isinstance(queues, str):
            queues = (queues,)
        if not queues:
            raise UserError("Worker(queues=...): give at least one queue name.")
        for name, count in (("concurrency", concurrency), ("max_attempts", max_attempts)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise UserError(f"Worker({name}={count!r}): give a whole number >= 1.")
        for name, value, least in (("poll", poll, 0.01), ("grace", grace, 0.0)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < least:
                raise UserError(f"Worker({name}={value!r}): give seconds, {least:g} or more.")
        self.runtime = runtime
        self.queues = tuple(check_queue(q) for q in queues)
        self.concurrency = concurrency
        self.deps = deps
        self.poll = float(poll)
        self.grace = float(grace)
        self.max_attempts = max_attempts
        self.finished = 0
        """Runs this worker stopped working on (completed, failed, waiting, put back)."""
        self._queue: RunQueue = queue_of(runtime.store)
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        """Set by a second `stop()`: runs are stopped at once, without a grace period."""
        self._active: dict[asyncio.Task[None], str] = {}
        """The task working on each run here, and the run's id."""
        self._slot_freed = asyncio.Event()
        self.metrics_poll = float(metrics_poll)

    @property
    def active(self) -> int:
        """Runs working here now."""
        return len(self._active)

    def stop(self) -> None:
        """Stop claiming and drain (see the module docstring); `run` returns once done.
        Called again (a second Ctrl-C), stop the runs at once, as a crash would."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Claim and work on runs until `stop()` (or, with `until_idle`, until no run
        waits on the queues and none works here: a dead worker's runs whose leases
        have not ended yet are not waiting), then drain."""
        metrics, store = self.runtime.metrics, self.runtime.store
        counting = None
        if metrics is not None and isinstance(store, RunCounts):
            counting = asyncio.create_task(self._count(metrics, store))
        try:
            await self._claim_loop(until_idle)
        finally:
            await self._drain()
            if counting is not None:
                counting.cancel()
                await asyncio.gather(counting, return_exceptions=True)

    async def _claim_loop(self, until_idle: bool) -> None:
        runtime, queues = self.runtime, self.queues
        while not self._stopping.is_set():
            if len(self._active) >= self.concurrency:
                self._slot_freed.clear()
                await self._first(self._slot_freed.wait(), asyncio.sleep(self.poll))
                if not self._slot_freed.is_set():
                    await self._make_room()
                continue
            free = min(self.concurrency - len(self._active), CLAIMS_AT_ONCE)
            try:
                records = await self._queue.claim_next(
                    runtime.owner, queues, ttl=runtime.lease_ttl, limit=free
                )
            except StoreError as exc:
                log.warning("claiming runs failed: %s", exc)
                await self._first(asyncio.sleep(self.poll))
                continue
            for record in records:
                self._start(record)
            if records:
                continue
            if until_idle and not self._active:
                return
            waiting: list[Awaitable[object]] = [self._queue.wait_for_runs(queues, self.poll)]
            if self._active:  # a run that finishes may free a slot: nothing else to do
                self._slot_freed.clear()
                waiting.append(self._slot_freed.wait())
            try:
                await self._first(*waiting)
            except Exception as exc:  # the store is away: claims say so, at a calm pace
                log.warning("waiting for runs failed: %s: %s", type(exc).__name__, exc)
                await self._first(asyncio.sleep(self.poll))

    async def _make_room(self) -> None:
        """Every slot is taken. If a run here has only been waiting (for mail, say)
        for `poll` seconds and another run can be claimed, work on that one and put
        the waiting one back on its queue: runs that wait on each other (a network
        and its agents) never hold every slot while the others wait for one."""
        mine = set(self._active.values())  # not a run its runtime works on outside the queue
        idle = [run_id for run_id in self.runtime.idle_runs(self.poll) if run_id in mine]
        if not idle:
            return
        try:
            records = await self._queue.claim_next(
                self.runtime.owner, self.queues, ttl=self.runtime.lease_ttl, limit=1
            )
        except StoreError as exc:
            log.warning("claiming runs failed: %s", exc)
            return
        if records:
            log.info("run %s waits: put back to work on run %s", idle[0], records[0].id)
            self.runtime.stop_steps(idle[:1])
            self._start(records[0])

    async def _first(self, *waits: Awaitable[object]) -> None:
        """Wait for the first of `waits` (coroutines) or for `stop()`; raise what it raised."""
        tasks = [asyncio.ensure_future(w) for w in (*waits, self._stopping.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    async def _count(self, metrics: Metrics, store: RunCounts) -> None:
        """Poll the store's counts of the queues' runs into `metrics`, until cancelled."""
        while True:
            try:
                metrics.polled(self.queues, await store.run_counts(self.queues))
            except Exception as exc:  # the store is away: the claims say so too
                log.warning("counting runs failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.metrics_poll)

    def _start(self, record: RunRecord) -> None:
        task = asyncio.create_task(self._work(record), name=f"orchestrion-run-{record.id}")
        self._active[task] = record.id
        task.add_done_callback(self._done)
        metrics = self.runtime.metrics
        if metrics is not None:
            queue = record.queue or ""
            metrics.claims.labels(queue).inc()
            if record.attempts > 1:  # its last worker died holding it, or stalled
                metrics.takeovers.labels(queue).inc()
            metrics.in_flight.inc()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)
        self.finished += 1
        self._slot_freed.set()
        if self.runtime.metrics is not None:
            self.runtime.metrics.in_flight.dec()

    async def _work(self, record: RunRecord) -> None:
        if record.attempts > self.max_attempts:
            await refuse_start(self.runtime.store, record, _poison(record))
            log.error(
                "run %s failed: taken %d times without finishing",
                record.id,
                record.attempts,
                extra={"run_id": record.id},
            )
            return
        try:
            result = await self.runtime.work_on(record, deps=self.deps)
            log.info(
                "run %s (%s): %s",
                record.id,
                record.name,
                result.status.value,
                extra={"run_id": record.id},
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The run failed with the reason, or its claim ends (a store that went
            # away): another claim continues it. One run's trouble never stops the worker.
            log.warning(
                "run %s stopped working here: %s: %s",
                record.id,
                type(exc).__name__,
                exc,
                extra={"run_id": record.id},
            )

    async def _drain(self) -> None:
        if not self._active:
            return
        self.runtime.stop_steps(self._active.values())
        every: asyncio.Future[Any] = asyncio.gather(*self._active, return_exceptions=True)
        hurry: asyncio.Future[Any] = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait({every, hurry}, timeout=self.grace, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        late = [t for t in self._active if not t.done()]
        for task in late:  # still in a step after the grace period: stop as a crash would
            task.cancel()
        await every


def _poison(record: RunRecord) -> RunError:
    return RunError(
        f"Run {record.id} was taken by workers {record.attempts} times without stopping "
        "cleanly: each worker that held it died (killed, out of memory) or lost it. It is "
        "failed so that it takes no more workers down; find the cause (`orchestrion show "
        f"{record.id}`: the last steps), then `orchestrion resume {record.id}`."
    )
