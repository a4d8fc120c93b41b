"""The queue of runs every built-in store keeps for workers (`engine.queue.RunQueue`):
what is claimed next, by whom, and when a dead worker's runs are taken over."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.queue import RunQueue, queue_of
from orchestrion.engine.store import Store
from orchestrion.errors import RunBusy

from .test_conformance import entry

T0 = 1_700_000_000.0


def queued(run_id: str, *, queue: str = "default", priority: int = 0, at: float = 0) -> RunRecord:
    return RunRecord(
        id=run_id,
        name="agent",
        status=RunStatus.QUEUED,
        target="pkg.mod:agent",
        created_at=T0 + at,
        updated_at=T0 + at,
        queue=queue,
        priority=priority,
    )


class OneAtATime:
    """`claim_next` with `limit=1`, as its first record or None."""

    def __init__(self, store: Store) -> None:
        self.queue: RunQueue = queue_of(store)

    async def claim_next(self, owner: str, queues: list[str], *, ttl: float) -> RunRecord | None:
        claimed = await self.queue.claim_next(owner, queues, ttl=ttl)
        assert len(claimed) <= 1
        return claimed[0] if claimed else None

    async def wait_for_runs(self, queues: list[str], timeout: float) -> None:
        await self.queue.wait_for_runs(queues, timeout)


def runs_queue(store: Store) -> OneAtATime:
    return OneAtATime(store)


async def test_claims_go_highest_priority_first_then_oldest_and_each_run_once(store: Store) -> None:
    q = runs_queue(store)
    for record in (
        queued("old", at=1),
        queued("older", at=0),
        queued("urgent", priority=5, at=9),
        queued("elsewhere", queue="billing", priority=9),
    ):
        await store.create_run(record)

    order = []
    while (claimed := await q.claim_next("w1", ["default"], ttl=30)) is not None:
        assert claimed.lease is not None and claimed.lease.owner == "w1"
        assert claimed.token == 1 and claimed.queue == "default"
        order.append(claimed.id)
    assert order == ["urgent", "older", "old"]
    # Claimed runs are not handed out again while their leases live.
    assert await q.claim_next("w2", ["default"], ttl=30) is None
    other = await q.claim_next("w2", ["billing", "default"], ttl=30)
    assert other is not None and other.id == "elsewhere" and other.priority == 9
    with pytest.raises(RunBusy):
        await store.claim("urgent", "w2")


async def test_a_run_whose_worker_died_is_taken_over_once_its_lease_ends(store: Store) -> None:
    q = runs_queue(store)
    await store.create_run(queued("r1"))
    first = await q.claim_next("dead", ["default"], ttl=0.2)
    assert first is not None and first.token == 1
    await store.update_run("r1", status=RunStatus.RUNNING, token=1)
    assert await q.claim_next("alive", ["default"], ttl=30) is None

    await asyncio.sleep(0.3)
    taken = await q.claim_next("alive", ["default"], ttl=30)
    assert taken is not None and taken.id == "r1" and taken.token == 2
    assert taken.status is RunStatus.RUNNING and taken.lease is not None
    assert taken.lease.owner == "alive"


async def test_runs_started_in_process_or_ended_are_never_claimed(store: Store) -> None:
    q = runs_queue(store)
    now = time.time()
    await store.create_run(
        RunRecord(id="local", name="a", status=RunStatus.RUNNING, created_at=now)
    )
    for status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED):
        record = queued(f"r-{status.value}")
        record.status = status
        await store.create_run(record)
    assert await q.claim_next("w", ["default"], ttl=30) is None


async def test_a_run_put_back_on_its_queue_is_claimed_again(store: Store) -> None:
    q = runs_queue(store)
    await store.create_run(queued("r1"))
    claimed = await q.claim_next("w1", ["default"], ttl=30)
    assert claimed is not None
    await store.update_run("r1", status=RunStatus.QUEUED, token=claimed.token, release=True)
    again = await q.claim_next("w2", ["default"], ttl=30)
    assert again is not None and again.id == "r1" and again.token == 2


async def test_concurrent_claims_never_share_a_run(store: Store) -> None:
    q = runs_queue(store)
    for i in range(30):
        await store.create_run(queued(f"r{i:02}", at=i))

    async def drain(worker: str) -> list[str]:
        got = []
        while (claimed := await q.claim_next(worker, ["default"], ttl=30)) is not None:
            got.append(claimed.id)
            await asyncio.sleep(0)
        return got

    claimed = await asyncio.gather(*(drain(f"w{i}") for i in range(5)))
    everything = [run_id for got in claimed for run_id in got]
    assert sorted(everything) == [f"r{i:02}" for i in range(30)]


async def test_an_idle_wait_ends_when_a_run_is_queued(store: Store) -> None:
    q = runs_queue(store)
    await q.wait_for_runs(["default"], 0.01)  # starts listening where that applies

    async def later() -> None:
        await asyncio.sleep(0.2)
        await store.create_run(queued("r1"))

    started = time.monotonic()
    task = asyncio.create_task(later())
    await q.wait_for_runs(["default"], 10)
    waited = time.monotonic() - started
    await task
    assert waited < 5, waited  # woken by the run, not by the timeout
    claimed = await q.claim_next("w", ["default"], ttl=30)
    assert claimed is not None and claimed.id == "r1"


async def test_one_claim_takes_several_runs_in_order(store: Store) -> None:
    q = queue_of(store)
    for i in range(5):
        await store.create_run(queued(f"r{i}", priority=i % 2, at=i))
    first = await q.claim_next("w1", ["default"], ttl=30, limit=3)
    assert [r.id for r in first] == ["r1", "r3", "r0"]
    assert all(r.status is RunStatus.RUNNING and r.lease is not None for r in first)
    rest = await q.claim_next("w2", ["default"], ttl=30, limit=10)
    assert [r.id for r in rest] == ["r2", "r4"]
    assert await q.claim_next("w3", ["default"], ttl=30, limit=10) == []


async def test_attempts_count_the_claims_until_the_run_stops_cleanly(store: Store) -> None:
    q = queue_of(store)
    await store.create_run(queued("r1"))
    [first] = await q.claim_next("w1", ["default"], ttl=0.1)
    assert first.attempts == 1
    await asyncio.sleep(0.15)  # its worker died: the lease ended
    [again] = await q.claim_next("w2", ["default"], ttl=30)
    assert again.attempts == 2 and again.token == 2
    await store.update_run("r1", status=RunStatus.INTERRUPTED, token=again.token, release=True)
    record = await store.get_run("r1")
    assert record is not None and record.attempts == 0


async def test_an_idle_wait_is_not_ended_by_a_run_of_another_queue(store: Store) -> None:
    q = runs_queue(store)
    await q.wait_for_runs(["billing"], 0.01)  # starts listening where that applies

    async def elsewhere() -> None:
        await asyncio.sleep(0.05)
        await store.create_run(queued("r1", queue="default"))
        await asyncio.sleep(0.2)
        await store.create_run(queued("r2", queue="billing"))

    task = asyncio.create_task(elsewhere())
    await q.wait_for_runs(["billing"], 10)
    await task
    claimed = await q.claim_next("w", ["billing"], ttl=30)
    assert claimed is not None and claimed.id == "r2"  # woken by its own queue's run
    assert await store.get_run("r2") is not None


async def test_a_claim_says_how_long_the_runs_journal_is(store: Store) -> None:
    """So a worker reads no journal for a run that has none (a queued run's first
    claim), and reads a taken-over run's whole."""
    q = queue_of(store)
    await store.create_run(queued("begun"))
    [first] = await q.claim_next("w1", ["default"], ttl=0.1)
    assert first.id == "begun" and first.journal_size == 0
    await store.append("begun", [entry(0), entry(1)], durable=True, token=first.token)
    await store.create_run(queued("new", at=1))
    await asyncio.sleep(0.15)  # w1 died: its lease ended
    claimed = await q.claim_next("w2", ["default"], ttl=30, limit=2)
    assert {r.id: r.journal_size for r in claimed} == {"begun": 2, "new": 0}
    [again] = [r for r in claimed if r.id == "begun"]
    await store.append("begun", [entry(2)], durable=True, token=again.token)  # goes on
    assert [e.seq for e in await store.load("begun")] == [0, 1, 2]
    assert (await store.get_run("begun")).journal_size is None  # type: ignore[union-attr]
