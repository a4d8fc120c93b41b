"""The contract every `Store` honours, run against each backend.

The `store` fixture (tests/conftest.py) gives each backend in turn; a new backend
is added there, in `STORE_KINDS` and `make_store`, and so runs here and under
every engine test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import Store
from orchestrion.errors import LeaseLost, RunBusy, RunNotFound, StoreError

T0 = 1_700_000_000.0


def run(run_id: str, *, created_at: float = T0, **fields: object) -> RunRecord:
    defaults: dict[str, object] = {"name": "agent", "status": RunStatus.RUNNING}
    defaults.update(fields)
    return RunRecord(id=run_id, created_at=created_at, updated_at=created_at, **defaults)  # type: ignore[arg-type]


def entry(seq: int, key: str | None = None, result: object = None, **fields: object) -> Entry:
    return Entry(
        seq=seq,
        key=key or f"agent/turn-{seq}/model",
        kind=str(fields.pop("kind", "model")),
        status=fields.pop("status", StepStatus.COMPLETED),  # type: ignore[arg-type]
        result=result if result is not None else {"text": f"step {seq}"},
        started_at=T0 + seq,
        ended_at=T0 + seq + 0.5,
    )


# -- runs ------------------------------------------------------------------


async def test_create_and_get_round_trips_every_field(store: Store) -> None:
    record = RunRecord(
        id="run-1",
        name="supervisor",
        status=RunStatus.RUNNING,
        input={"question": "Pay off my car loan"},
        target="examples/loan.py:team",
        pending=[{"key": "approval/pay", "prompt": "Pay?"}],
        created_at=T0,
        updated_at=T0 + 1,
        parent_id="run-0",
        fork_at="supervisor/turn-2/model",
        idempotency_key="idem-1",
        usage=[10, 20, 3],
    )
    await store.create_run(record)
    assert await store.get_run("run-1") == record
    assert await store.get_run("nope") is None


async def test_get_run_returns_a_copy(store: Store) -> None:
    record = run("run-1")
    await store.create_run(record)
    record.status = RunStatus.FAILED
    got = await store.get_run("run-1")
    assert got is not None and got.status is RunStatus.RUNNING
    got.status = RunStatus.CANCELLED
    again = await store.get_run("run-1")
    assert again is not None and again.status is RunStatus.RUNNING


async def test_list_runs_newest_first_with_status_filter_and_limit(store: Store) -> None:
    assert await store.list_runs() == []
    statuses = [RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED]
    # Inserted out of time order: the order must come from created_at.
    for i in (2, 0, 3, 1):
        await store.create_run(run(f"run-{i}", created_at=T0 + i, status=statuses[i]))
    assert [r.id for r in await store.list_runs()] == ["run-3", "run-2", "run-1", "run-0"]
    completed = await store.list_runs(status=RunStatus.COMPLETED)
    assert [r.id for r in completed] == ["run-2", "run-0"]
    assert all(r.status is RunStatus.COMPLETED for r in completed)
    assert [r.id for r in await store.list_runs(limit=2)] == ["run-3", "run-2"]
    assert [r.id for r in await store.list_runs(status=RunStatus.COMPLETED, limit=1)] == ["run-2"]
    assert await store.list_runs(status=RunStatus.INTERRUPTED) == []


async def test_update_run_sets_status_and_outcome(store: Store) -> None:
    await store.create_run(run("run-1", usage=[1, 2, 3]))
    pending = [{"key": "approval/pay", "question": "Pay 100 EUR?"}]
    await store.update_run("run-1", status=RunStatus.INTERRUPTED, pending=pending)
    got = await store.get_run("run-1")
    assert got is not None
    assert got.status is RunStatus.INTERRUPTED
    assert got.pending == pending
    assert got.usage == [1, 2, 3], "usage=None keeps the recorded usage"
    assert got.updated_at > T0

    await store.update_run(
        "run-1", status=RunStatus.COMPLETED, output={"paid": 100}, usage=[5, 6, 7]
    )
    got = await store.get_run("run-1")
    assert got is not None
    assert (got.status, got.output, got.pending, got.usage) == (
        RunStatus.COMPLETED,
        {"paid": 100},
        [],
        [5, 6, 7],
    )
    assert got.name == "agent" and got.created_at == T0, "other fields are kept"

    error = {"type": "ToolError", "message": "boom", "cause_chain": []}
    await store.update_run("run-1", status=RunStatus.FAILED, error=error)
    got = await store.get_run("run-1")
    assert got is not None
    assert (got.status, got.error, got.output) == (RunStatus.FAILED, error, None)
    assert [r.id for r in await store.list_runs(status=RunStatus.FAILED)] == ["run-1"]
    assert await store.list_runs(status=RunStatus.RUNNING) == []


async def test_update_unknown_run_raises(store: Store) -> None:
    with pytest.raises(StoreError, match="ghost"):
        await store.update_run("ghost", status=RunStatus.COMPLETED)


async def test_a_used_idempotency_key_is_refused_naming_its_run(store: Store) -> None:
    await store.create_run(run("run-1", idempotency_key="key-a"))
    with pytest.raises(StoreError, match="idempotency key 'key-a' is already used by run 'run-1'"):
        await store.create_run(run("run-2", idempotency_key="key-a"))
    assert await store.get_run("run-2") is None


async def test_find_run_by_idempotency_key(store: Store) -> None:
    await store.create_run(run("run-1", idempotency_key="key-a"))
    await store.create_run(run("run-2"))
    found = await store.find_run(idempotency_key="key-a")
    assert found is not None and found.id == "run-1"
    assert await store.find_run(idempotency_key="key-b") is None


async def test_duplicate_run_id_raises_and_keeps_the_original(store: Store) -> None:
    await store.create_run(run("run-1", name="first"), [entry(0)])
    with pytest.raises(StoreError, match="run-1"):
        await store.create_run(run("run-1", name="second"), [entry(0), entry(1)])
    got = await store.get_run("run-1")
    assert got is not None and got.name == "first"
    assert await store.load("run-1") == [entry(0)]
    # The store still works after the failure.
    await store.append("run-1", [entry(1)], durable=True)
    assert [e.seq for e in await store.load("run-1")] == [0, 1]


# -- journal ---------------------------------------------------------------


async def test_append_durable_and_not_then_load_in_order(store: Store) -> None:
    await store.create_run(run("run-1"))
    assert await store.load("run-1") == []
    await store.append("run-1", [entry(0)], durable=False)
    await store.append("run-1", [entry(1), entry(2)], durable=True)
    await store.append("run-1", [entry(3, status=StepStatus.STARTED, kind="tool")], durable=False)
    await store.append("run-1", [entry(4)], durable=False)
    # load sees entries appended without waiting.
    loaded = await store.load("run-1")
    assert loaded == [
        entry(0),
        entry(1),
        entry(2),
        entry(3, status=StepStatus.STARTED, kind="tool"),
        entry(4),
    ]
    assert await store.load("unknown") == []


async def test_journals_are_per_run(store: Store) -> None:
    await store.create_run(run("a"))
    await store.create_run(run("b", created_at=T0 + 1))
    await store.append("a", [entry(0, "a0")], durable=False)
    await store.append("b", [entry(0, "b0")], durable=False)
    await store.append("a", [entry(1, "a1")], durable=False)
    assert [e.key for e in await store.load("a")] == ["a0", "a1"]
    assert [e.key for e in await store.load("b")] == ["b0"]


async def test_create_run_with_initial_entries_for_a_fork(store: Store) -> None:
    await store.create_run(run("parent"), [entry(i) for i in range(3)])
    parent = await store.load("parent")
    prefix = [*parent[:2], entry(2, result={"text": "edited"})]
    await store.create_run(
        run("fork", parent_id="parent", fork_at=parent[2].key, created_at=T0 + 1), prefix
    )
    await store.append("fork", [entry(3)], durable=False)
    assert await store.load("fork") == [*prefix, entry(3)]
    assert await store.load("parent") == parent, "the parent journal is untouched"
    fork = await store.get_run("fork")
    assert fork is not None and (fork.parent_id, fork.fork_at) == ("parent", parent[2].key)


@pytest.mark.parametrize("durable", [True, False])
async def test_append_to_unknown_run_raises(store: Store, durable: bool) -> None:
    with pytest.raises(StoreError, match="ghost"):
        await store.append("ghost", [entry(0)], durable=durable)
    assert await store.load("ghost") == []
    # Nothing is left to surface later.
    await store.create_run(run("real"))
    await store.append("real", [entry(0)], durable=True)


async def test_append_refuses_a_duplicate_or_out_of_order_seq(store: Store) -> None:
    """A journal is a gap-free prefix: each append continues it at its next seq."""
    await store.create_run(run("run-1"))
    await store.append("run-1", [entry(0), entry(1)], durable=True)
    with pytest.raises(StoreError, match=r"run 'run-1'.*seq 1.*resumed twice at once"):
        await store.append("run-1", [entry(1, result={"again": True})], durable=True)
    # A store may refuse the run's writes until its journal is read again (a resume).
    assert await store.load("run-1") == [entry(0), entry(1)]
    with pytest.raises(StoreError, match=r"run 'run-1'.*seq 2 would be missing"):
        await store.append("run-1", [entry(3)], durable=True)
    assert await store.load("run-1") == [entry(0), entry(1)]
    with pytest.raises(StoreError, match=r"run 'run-1'.*seq 3 would be missing"):
        await store.append("run-1", [entry(2), entry(4)], durable=True)
    assert await store.load("run-1") == [entry(0), entry(1)], "a refused append adds nothing"
    await store.append("run-1", [entry(2), entry(3)], durable=True)
    assert [e.seq for e in await store.load("run-1")] == [0, 1, 2, 3]
    # A fork's journal continues after the entries it was created with.
    await store.create_run(run("fork", created_at=T0 + 1), [entry(0), entry(1)])
    with pytest.raises(StoreError, match=r"run 'fork'.*resumed twice at once"):
        await store.append("fork", [entry(0)], durable=True)
    assert await store.load("fork") == [entry(0), entry(1)]
    await store.append("fork", [entry(2)], durable=True)
    assert [e.seq for e in await store.load("fork")] == [0, 1, 2]


async def test_concurrent_appends_keep_per_run_order(store: Store) -> None:
    runs, steps = 50, 20
    for r in range(runs):
        await store.create_run(run(f"run-{r}", created_at=T0 + r))

    async def worker(r: int) -> None:
        for i in range(steps):
            await store.append(
                f"run-{r}", [entry(i, f"run-{r}/step-{i}")], durable=(i + r) % 5 == 0
            )
            if i % 3 == 0:
                await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        for r in range(runs):
            tg.create_task(worker(r))

    for r in range(runs):
        loaded = await store.load(f"run-{r}")
        assert [e.seq for e in loaded] == list(range(steps))
        assert [e.key for e in loaded] == [f"run-{r}/step-{i}" for i in range(steps)]


NESTED = {
    "text": 'Grüße, 世界! 🚀 «quotes» "escaped" \\ back\nslash\ttab \u2028',
    "numbers": [0, -1, 2**53, 3.5, -0.25, 1e-300],
    "flags": [True, False, None],
    "deep": {"a": [{"b": [{"c": {"d": ["é", {"ü": "ß"}]}}]}]},
    "empty": {"list": [], "dict": {}, "str": ""},
    "clé ünïcode": "valeur",
}


async def test_json_round_trip_of_nested_unicode(store: Store) -> None:
    record = run("run-ü", input=NESTED, idempotency_key="clé-🔑")
    await store.create_run(record, [entry(0, "outil/é", result=NESTED)])
    await store.append("run-ü", [entry(1, "模型/turn-1", result=[NESTED, "😀"])], durable=False)
    await store.update_run("run-ü", status=RunStatus.COMPLETED, output=NESTED, pending=[NESTED])
    got = await store.get_run("run-ü")
    assert got is not None
    assert (got.input, got.output, got.pending) == (NESTED, NESTED, [NESTED])
    found = await store.find_run(idempotency_key="clé-🔑")
    assert found is not None and found.id == "run-ü"
    loaded = await store.load("run-ü")
    assert loaded == [
        entry(0, "outil/é", result=NESTED),
        entry(1, "模型/turn-1", result=[NESTED, "😀"]),
    ]
    assert type(loaded[0].status) is StepStatus
    assert type(got.status) is RunStatus


async def test_close_twice_is_harmless(store: Store) -> None:
    await store.create_run(run("run-1"))
    await store.append("run-1", [entry(0)], durable=False)
    await store.close()
    await store.close()


async def test_times_are_floats(store: Store) -> None:
    now = time.time()
    await store.create_run(run("run-1", created_at=now))
    got = await store.get_run("run-1")
    assert got is not None and got.created_at == now


# -- leases and fencing ------------------------------------------------------


async def test_create_with_an_owner_claims_the_run_in_the_same_write(store: Store) -> None:
    before = time.time()
    lease = await store.create_run(run("run-1"), owner="host:1:a", ttl=30)
    assert lease is not None and (lease.owner, lease.token) == ("host:1:a", 1)
    assert before <= lease.since <= lease.until - 30 + 0.001
    got = await store.get_run("run-1")
    assert got is not None and got.lease == lease and got.token == 1
    assert got.orphaned_since(time.time()) is None
    assert await store.create_run(run("run-2")) is None
    unowned = await store.get_run("run-2")
    assert unowned is not None and unowned.lease is None and unowned.token == 0


async def test_a_live_lease_refuses_another_owner_naming_the_holder(store: Store) -> None:
    held = await store.create_run(run("run-1"), owner="host:1:a", ttl=30)
    assert held is not None
    with pytest.raises(RunBusy) as busy:
        await store.claim("run-1", "host:2:b", ttl=30)
    assert (busy.value.owner, busy.value.since, busy.value.until) == (
        "host:1:a",
        held.since,
        held.until,
    )
    assert "host:1:a" in str(busy.value) and "--wait" in str(busy.value)
    got = await store.get_run("run-1")
    assert got is not None and got.lease == held  # nothing changed


async def test_each_claim_increments_the_token(store: Store) -> None:
    await store.create_run(run("run-1"), owner="a", ttl=30)
    again = await store.claim("run-1", "a", ttl=30)  # the holder may claim again
    assert again.lease is not None and again.lease.token == 2 and again.token == 2
    stolen = await store.claim("run-1", "b", ttl=30, steal=True)
    assert stolen.lease is not None and (stolen.lease.owner, stolen.lease.token) == ("b", 3)


async def test_an_expired_lease_can_be_claimed_and_shows_the_run_orphaned(store: Store) -> None:
    lease = await store.create_run(run("run-1"), owner="a", ttl=0.05)
    assert lease is not None
    await asyncio.sleep(0.1)
    got = await store.get_run("run-1")
    assert got is not None and got.orphaned_since(time.time()) == lease.until
    claimed = await store.claim("run-1", "b", ttl=30)
    assert claimed.lease is not None and claimed.lease.owner == "b" and claimed.token == 2
    assert claimed.orphaned_since(time.time()) is None


async def test_claiming_a_missing_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound, match="'nope'"):
        await store.claim("nope", "a")


@pytest.mark.parametrize("durable", [True, False])
async def test_an_append_with_a_stale_token_is_refused_and_writes_nothing(
    store: Store, durable: bool
) -> None:
    await store.create_run(run("run-1"), owner="a", ttl=30)
    await store.append("run-1", [entry(0)], durable=True, token=1)
    await store.claim("run-1", "b", ttl=30, steal=True)  # token 2
    with pytest.raises(LeaseLost, match=r"token 1.*now 2"):
        # Not waited for: the refusal reaches the run's next call.
        await store.append("run-1", [entry(1)], durable=durable, token=1)
        await store.append("run-1", [entry(2)], durable=True, token=1)
    assert [e.seq for e in await store.load("run-1")] == [0]
    await store.append("run-1", [entry(1)], durable=True, token=2)  # the new owner goes on
    assert [e.seq for e in await store.load("run-1")] == [0, 1]


async def test_a_status_change_with_a_stale_token_is_refused(store: Store) -> None:
    await store.create_run(run("run-1"), owner="a", ttl=30)
    taken = await store.claim("run-1", "b", ttl=30, steal=True)
    await store.update_run("run-1", status=RunStatus.CANCELLED, token=2, release=True)
    with pytest.raises(LeaseLost):
        await store.update_run("run-1", status=RunStatus.COMPLETED, output="paid", token=1)
    got = await store.get_run("run-1")
    assert got is not None and got.status is RunStatus.CANCELLED and got.output is None
    assert got.lease is None and got.token == taken.token  # released; the token stays


async def test_renew_extends_live_leases_and_names_the_lost_ones(store: Store) -> None:
    a = await store.create_run(run("run-a"), owner="me", ttl=1)
    b = await store.create_run(run("run-b"), owner="me", ttl=1)
    assert a is not None and b is not None
    await store.claim("run-b", "other", ttl=30, steal=True)
    lost = await store.renew({"run-a": 1, "run-b": 1, "nope": 1}, ttl=60)
    assert lost == {"run-b", "nope"}
    got = await store.get_run("run-a")
    assert got is not None and got.lease is not None and got.lease.until >= a.until + 50
    other = await store.get_run("run-b")
    assert other is not None and other.lease is not None and other.lease.owner == "other"


async def test_release_ends_only_the_current_lease(store: Store) -> None:
    await store.create_run(run("run-1"), owner="a", ttl=30)
    await store.claim("run-1", "b", ttl=30, steal=True)
    await store.release("run-1", 1)  # stale: nothing happens
    got = await store.get_run("run-1")
    assert got is not None and got.lease is not None and got.lease.owner == "b"
    await store.release("run-1", 2)
    got = await store.get_run("run-1")
    assert got is not None and got.lease is None
    assert got.orphaned_since(time.time()) == got.updated_at  # running, nobody on it
    assert await store.renew({"run-1": 2}) == {"run-1"}  # a released lease is not renewed
    claimed = await store.claim("run-1", "c")
    assert claimed.token == 3


async def test_the_final_status_can_release_the_lease(store: Store) -> None:
    await store.create_run(run("run-1"), owner="a", ttl=30)
    await store.update_run("run-1", status=RunStatus.INTERRUPTED, token=1, release=True)
    got = await store.get_run("run-1")
    assert got is not None and got.lease is None and got.status is RunStatus.INTERRUPTED
    assert got.orphaned_since(time.time()) is None  # waiting for a human, not orphaned
    listed = await store.list_runs()
    assert listed[0].lease is None and listed[0].token == 1


async def test_leases_show_in_every_read(store: Store) -> None:
    lease = await store.create_run(run("run-1", idempotency_key="k"), owner="a", ttl=30)
    found = await store.find_run(idempotency_key="k")
    listed = await store.list_runs()
    assert found is not None and found.lease == lease
    assert listed[0].lease == lease


async def test_a_stale_owners_refused_write_does_not_refuse_the_new_owner(store: Store) -> None:
    """Two owners on one store object (two runtimes in one process): the old
    owner's write, refused after the run was taken, must not stop the new owner
    (a cancel's status change, a resume's load and appends)."""
    await store.create_run(run("run-1"), owner="a", ttl=30)
    await store.append("run-1", [entry(0)], durable=True, token=1)
    await store.claim("run-1", "b", ttl=30, steal=True)  # token 2
    with contextlib.suppress(LeaseLost):  # refused now (memory) or in the writer (sqlite)
        await store.append("run-1", [entry(1)], durable=False, token=1)
    assert [e.seq for e in await store.load("run-1")] == [0]
    await store.append("run-1", [entry(1)], durable=True, token=2)
    await store.update_run("run-1", status=RunStatus.CANCELLED, token=2, release=True)
    got = await store.get_run("run-1")
    assert got is not None and got.status is RunStatus.CANCELLED and got.lease is None
    assert [e.seq for e in await store.load("run-1")] == [0, 1]
    with pytest.raises(LeaseLost):  # the old owner is still refused
        await store.append("run-1", [entry(2)], durable=True, token=1)
