"""`Leases`: the runs a runtime owns, kept renewed by one heartbeat task.

A runtime claims a run in the store before working on it (see `Store`); this
keeps each claim alive while the run works here, releases it when the run stops
working here, and halts a run whose lease turns out lost (cancelled from
another process, or taken over after this process stalled past its lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Iterable

from orchestrion.engine.journal import Lease, RunRecord, RunStatus
from orchestrion.engine.replay_log import ReplayLog, StepsStopped
from orchestrion.engine.store import Store
from orchestrion.errors import LeaseLost, RunBusy, StoreError


class Leases:
    """The leases one runtime holds, renewed every third of `ttl` in one store write."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._held: dict[str, tuple[Lease, ReplayLog]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping: set[str] = set()
        """Runs to stop before their next step, held here now or later (a worker's)."""

    def hold(self, lease: Lease, log: ReplayLog) -> None:
        """Keep `lease` on `log.run_id` renewed while the run works here; halt the
        run (through its `log`) if the lease turns out lost."""
        self._held[log.run_id] = (lease, log)
        if self._stopping and log.run_id in self._stopping:
            log.stop_steps(_stopping())
        loop = asyncio.get_running_loop()
        beat = self._heartbeat
        if beat is None or beat.done() or beat.get_loop() is not loop:
            self._heartbeat = loop.create_task(  # outlives the run (and span) that started it
                self._renew(), name="orchestrion-leases", context=contextvars.Context()
            )

    async def confirm(self, run_id: str, token: int) -> None:
        """Renew the run's lease now; `LeaseLost` if the store says it is not ours."""
        if run_id in await self.store.renew({run_id: token}, ttl=self.ttl):
            raise _taken(run_id, token)

    def released(self, run_id: str) -> None:
        """The run's lease was released with its final status: stop renewing it."""
        self._held.pop(run_id, None)
        self._stopping.discard(run_id)

    async def let_go(self, run_id: str) -> None:
        """The run stopped working here: release its lease if still held (a crash-like
        stop leaves the run resumable at once), and stop renewing it."""
        held = self._held.pop(run_id, None)
        draining = run_id in self._stopping
        self._stopping.discard(run_id)
        # The heartbeat stays, for the runs that follow: it ends by itself at its
        # next beat if none is held by then. A worker's run stopped after its grace
        # period while a write tool of it was under way keeps its lease until it
        # ends: the call may still run (in a thread), and no other worker may make
        # it again meanwhile.
        if held is not None and not (draining and held[1].writing):
            await asyncio.shield(quietly(self.store.release(run_id, held[0].token)))

    def stop_steps(self, run_ids: Iterable[str]) -> None:
        """These runs, held here now or later, stop before their next step (`StepsStopped`)."""
        for run_id in run_ids:
            self._stopping.add(run_id)
            held = self._held.get(run_id)
            if held is not None:
                held[1].stop_steps(_stopping())

    def idle(self, longer_than: float) -> list[str]:
        """The runs held here that have only been waiting (`wait=True` steps) for
        more than `longer_than` seconds, the longest first."""
        now = time.monotonic()
        since = {run_id: log.waiting_since for run_id, (_, log) in self._held.items()}
        idle = [
            (t, run_id) for run_id, t in since.items() if t is not None and now - t > longer_than
        ]
        return [run_id for _, run_id in sorted(idle)]

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not self._held:
                return
            tokens = {run_id: lease.token for run_id, (lease, _) in self._held.items()}
            try:
                lost = await self.store.renew(tokens, ttl=self.ttl)
            except Exception:
                # The store is unreachable (a StoreError, or what its driver raised): try
                # again at the next beat; fencing still refuses stale writes meanwhile.
                continue
            for run_id in lost:
                held = self._held.get(run_id)
                # Only the lease renewed is lost: the run may have stopped meanwhile and
                # be working here again, under a new lease.
                if held is not None and held[0].token == tokens.get(run_id):
                    del self._held[run_id]
                    lease, log = held
                    log.halt(_taken(run_id, lease.token))


def _stopping() -> StepsStopped:
    return StepsStopped("this process is stopping: the run goes back to its queue")


def _taken(run_id: str, token: int) -> LeaseLost:
    return LeaseLost(
        f"Run {run_id} is no longer owned by this process: its lease (token {token}) was "
        "taken, by a cancel or by another process after this one's lease ended. This "
        f"process stops working on it before its next step; see `orchestrion show {run_id}`.",
        run_id=run_id,
    )


async def quietly(aw: Awaitable[None]) -> None:
    """Await a clean-up write whose failure must not hide the error being raised."""
    with contextlib.suppress(StoreError):
        await aw


async def claim_within(store: Store, run_id: str, owner: str, ttl: float, wait: float) -> RunRecord:
    """The run's record, claimed by `owner`; waits up to `wait` seconds for another
    owner to let go (`RunBusy` after that)."""
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            return await store.claim(run_id, owner, ttl=ttl)
        except RunBusy as busy:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            # Its lease ends at busy.until at the latest, if nobody renews it.
            await asyncio.sleep(max(min(pause, left, busy.until - time.time()), 0.01))
            pause = min(pause * 2, 1.0)


async def cancel_elsewhere(store: Store, run_id: str, owner: str, ttl: float) -> None:
    """Take the run from whoever works on it (a new fencing token: their next write
    is refused) and mark it cancelled; a completed or cancelled run is left as is."""
    while True:
        record = await store.claim(run_id, owner, ttl=ttl, steal=True)
        lease = record.lease
        assert lease is not None
        if record.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
            await store.release(run_id, lease.token)
            return
        try:
            await store.update_run(
                run_id,
                status=RunStatus.CANCELLED,
                usage=record.usage,
                token=lease.token,
                release=True,
            )
        except LeaseLost:
            continue  # another cancel took the run meanwhile: the next claim tells
        return
