"""A queue of runs for workers: what a store adds for them (`RunQueue`), submitting
a run to a queue, and putting a run back on its queue with answers.

A submitted run is a run record with status `queued`, a `queue` name, a
`priority` and a `target` (how a worker finds its runnable). A worker claims it
under a lease (`RunQueue.claim_next`), which also takes over a run of its queues
whose worker died (its lease ended). Answers given to a submitted run's
interrupts are kept in its record (each pending interrupt's `answer`) until the
worker that continues it reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrion import keys
from orchestrion._json import JSON, JSONInput, as_object, clean_data, short_json
from orchestrion.engine.answers import check_answers, not_yet_answered
from orchestrion.engine.interrupts import Answer
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus, StepStatus
from orchestrion.engine.leases import quietly
from orchestrion.engine.records import value_of
from orchestrion.engine.runs import find_submitted, new_record
from orchestrion.engine.store import DEFAULT_LEASE_TTL, Store
from orchestrion.engine.targets import load_target, member_target
from orchestrion.errors import AnswerError, RunNotResumable, StoreError, UserError, describe
from orchestrion.runnable import Runnable

if TYPE_CHECKING:
    from orchestrion.engine.tracing import Tracing

DEFAULT_QUEUE = "default"


@runtime_checkable
class RunQueue(Protocol):
    """What a store adds so that workers can share its runs (the built-in stores do)."""

    async def claim_next(
        self, owner: str, queues: Sequence[str], *, ttl: float = DEFAULT_LEASE_TTL, limit: int = 1
    ) -> list[RunRecord]:
        """Claim, atomically, the (at most `limit`) runs a worker on `queues` takes
        next: `queued` runs, or `running` ones whose lease ended (their worker died
        or let go); highest priority first, then oldest. Each is marked `running`
        and its fencing token incremented: two workers never get the same run."""
        ...

    async def wait_for_runs(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a run may have been queued or put back (by any process), or
        after `timeout` seconds; an idle worker waits here between claims."""
        ...


@runtime_checkable
class RunCounts(Protocol):
    """What a store adds so that workers' metrics show its queues (the built-in
    stores do; a store without it works, its queues uncounted)."""

    async def run_counts(self, queues: Sequence[str]) -> dict[tuple[str, str], int]:
        """How many runs of `queues` are queued, running or waiting for humans
        (`interrupted`), by (status, queue)."""
        ...


def queue_of(store: Store) -> RunQueue:
    if not isinstance(store, RunQueue):
        raise UserError(
            f"The store {store.url} keeps no queue of runs (no claim_next/wait_for_runs): "
            "submit and work on runs with sqlite:///path.db or postgresql://..."
        )
    return store


def check_queue(queue: str) -> str:
    if not isinstance(queue, str) or not queue or len(queue) > 100 or not queue.isprintable():
        raise UserError(f"Queue name {queue!r}: give 1 to 100 printable characters.")
    return queue


async def submit(
    store: Store,
    target: str,
    input: JSONInput,
    *,
    queue: str,
    priority: int,
    idempotency_key: str | None,
    run_id: str | None,
    tracing: Tracing | None = None,
    traceparent: str | None = None,
) -> str:
    """Queue a run of `target` on `input`; its id. With an `idempotency_key`
    already used, the id of the run submitted with it (same target and input).
    Its traces hang under `traceparent` if given, else (when `tracing`) under the
    span current here."""
    queue_of(store)
    if traceparent is not None:
        from orchestrion.engine.tracing import parse_traceparent  # imports OpenTelemetry

        traceparent = parse_traceparent(traceparent)
    check_queue(queue)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) >= 2**31:
        raise UserError(
            f"priority={priority!r}: give a whole number between -2147483647 and 2147483647 "
            "(higher runs first)."
        )
    runnable = load_target(target)  # a wrong target fails here, not in a worker
    record = new_record(
        runnable,
        input,
        run_id,
        status=RunStatus.QUEUED,
        target=target,
        idempotency_key=idempotency_key,
        queue=queue,
        priority=priority,
    )
    record.trace = traceparent
    return await _enqueue(store, record, tracing)


async def submit_member(
    store: Store,
    targets: dict[str, Runnable],
    tracing: Tracing | None,
    run_id: str,
    idempotency_key: str,
    member: Runnable,
    input: JSONInput,
) -> str:
    """Queue a separate run of `member`, a member of the runnable of run `run_id`, on
    that run's queue, one priority above it (`ctx.submit`): runs that work already
    begun waits for are taken before new work. Its id; submitted once per
    `idempotency_key`."""
    record = await store.get_run(run_id)
    if record is None or record.queue is None or not record.target:
        raise UserError(
            f"ctx.submit({getattr(member, 'name', member)!r}) queues a separate run for "
            f"workers, found from this run's target; run {run_id} was not submitted to a "
            "queue: submit it (`orchestrion submit TARGET` or Runtime.submit) and run "
            "`orchestrion worker`s."
        )
    target = member_target(record.target, target_of(record, targets), member)
    sooner = min(record.priority + 1, 2**31 - 1)  # work already begun goes first
    targets.setdefault(target, member)
    submitted = new_record(
        member,
        input,
        None,
        status=RunStatus.QUEUED,
        target=target,
        idempotency_key=idempotency_key,
        queue=record.queue,
        priority=sooner,
    )
    return await _enqueue(store, submitted, tracing)  # traced under the submitting step


def submit_steps(entries: Sequence[Entry]) -> list[Entry]:
    """The completed steps of a journal that queued separate runs (`ctx.submit`)."""
    return [
        e
        for e in entries
        if e.kind == "step" and e.status is StepStatus.COMPLETED and keys.is_submit(e.key)
    ]


def submitted_by(entries: Sequence[Entry]) -> list[str]:
    """The ids of the runs that a run queued with `ctx.submit`, from its journal."""
    return [str(value_of(e)) for e in submit_steps(entries)]


async def _enqueue(store: Store, record: RunRecord, tracing: Tracing | None) -> str:
    """Write queued run `record` (hung under the span current here, if traced and it
    has no trace yet); its id, or the id of the run its idempotency key is held by."""
    idempotency_key = record.idempotency_key
    if idempotency_key is not None:
        existing = await _submitted(store, idempotency_key, record)
        if existing is not None:
            return existing
    if tracing is not None and record.trace is None:
        tracing.submitted(record)
    try:
        await store.create_run(record)
    except StoreError:
        if idempotency_key is None:
            raise
        existing = await _submitted(store, idempotency_key, record)
        if existing is None:
            raise
        return existing  # another submission with the key won the race
    return record.id


async def _submitted(store: Store, key: str, record: RunRecord) -> str | None:
    found = await find_submitted(store, key, record.name, record.input)
    return None if found is None else found.id


def with_answers(record: RunRecord, checked: dict[str, JSON]) -> list[JSON]:
    """`record.pending`, each interrupt answered in `checked` (by `check_answers`)
    carrying its `answer`. An interrupt answered before keeps its answer; another
    answer to it is refused."""
    pending: list[JSON] = []
    for item in record.pending:
        fields = as_object(item)
        iid = fields["id"]
        if iid in checked:
            if "answer" in fields and fields["answer"] != checked[iid]:
                raise AnswerError(
                    f"Interrupt {iid} of run {record.id} was already answered with "
                    f"{short_json(fields['answer'])}; it cannot be answered again with "
                    f"{short_json(checked[iid])}."
                )
            fields = {**fields, "answer": checked[iid]}
        pending.append(fields)
    return pending


def unanswered(pending: list[JSON], answered: AbstractSet[str]) -> list[JSON]:
    """The interrupts of `pending` not in `answered`, without the answers kept for
    them (one was refused: they are asked again)."""
    return [
        {k: v for k, v in fields.items() if k != "answer"}
        for fields in map(as_object, pending)
        if fields["id"] not in answered
    ]


def kept_and_given(record: RunRecord, checked: dict[str, JSON]) -> dict[str, JSON]:
    """The answers kept in `record` and those given now (`checked`), which may not
    contradict them."""
    kept = given_answers(record)
    for iid, answer in checked.items():
        if iid in kept and kept[iid] != answer:
            raise AnswerError(
                f"Interrupt {iid} of run {record.id} was already answered with "
                f"{short_json(kept[iid])}; it cannot be answered again with {short_json(answer)}."
            )
    return {**kept, **checked}


async def put_back(store: Store, record: RunRecord, lease: Lease, usage: list[JSON]) -> RunStatus:
    """A run whose worker stopped it at a step boundary, back on its queue as it
    stands (a run of no queue stays `running`, free for a resume); its status."""
    status = RunStatus.QUEUED if record.queue else RunStatus.RUNNING
    await store.update_run(
        record.id,
        status=status,
        pending=record.pending,
        usage=usage,
        token=lease.token,
        release=True,
    )
    return status


async def refuse_start(store: Store, record: RunRecord, exc: Exception) -> None:
    """A claimed run of a queue that cannot start: failed with `exc` (its code does
    not import), or waiting again without its kept answers (one contradicts the
    journal); either way the claim ends. A store error leaves the claim to end by
    itself, so that the run is taken again only after it."""
    if isinstance(exc, StoreError) or record.lease is None:
        return
    answers_wrong = isinstance(exc, AnswerError)
    with contextlib.suppress(StoreError):
        await store.update_run(
            record.id,
            status=RunStatus.INTERRUPTED if answers_wrong else RunStatus.FAILED,
            error=as_object(clean_data(describe(exc))),
            pending=unanswered(record.pending, set()) if answers_wrong else record.pending,
            usage=record.usage,
            token=record.lease.token,
            release=True,
        )


def given_answers(record: RunRecord) -> dict[str, JSON]:
    """The answers kept in a queued run's record (`with_answers`), by interrupt id."""
    return {
        str(fields["id"]): fields["answer"]
        for fields in map(as_object, record.pending)
        if "answer" in fields
    }


async def requeue(store: Store, record: RunRecord, answers: Mapping[str, Answer]) -> None:
    """Put the run of `record` (claimed by the caller) back on its queue with
    `answers`, and let it go; refused (and let go) if it cannot go back."""
    assert record.lease is not None
    try:
        check_requeue(record)
        checked = check_answers(record, answers)
        not_yet_answered(record.id, await store.load(record.id), checked)
        pending = with_answers(record, checked)
        waiting = [p["id"] for p in map(as_object, pending) if "answer" not in p]
        if record.status is RunStatus.INTERRUPTED and waiting:
            raise AnswerError(
                f"Run {record.id} waits for answers to {waiting}: give them (--approve ID, "
                "--reject ID, --answer ID VALUE), and it goes back on its queue."
            )
    except BaseException:
        await quietly(store.release(record.id, record.lease.token))
        raise
    await store.update_run(
        record.id,
        status=RunStatus.QUEUED,
        pending=pending,
        usage=record.usage,
        token=record.lease.token,
        release=True,
    )


async def runnable_of(record: RunRecord, known: dict[str, Runnable]) -> Runnable:
    """The runnable of a queued run's target: loaded once per target (in `known`),
    in a thread, so that the event loop (and the lease heartbeat) goes on meanwhile."""
    runnable = known.get(record.target or "")
    return runnable if runnable is not None else await asyncio.to_thread(target_of, record, known)


def target_of(record: RunRecord, known: dict[str, Runnable]) -> Runnable:
    """The runnable of a queued run's target, loaded once per target (in `known`)."""
    runnable = known.get(record.target or "")
    if runnable is None:
        if not record.target:
            raise RunNotResumable(f"Run {record.id} is on a queue but has no target to run.")
        runnable = known[record.target] = load_target(record.target)
    return runnable


def check_requeue(record: RunRecord) -> str:
    """The queue to put `record` back on; `RunNotResumable` if it cannot go back."""
    if record.queue is None:
        raise RunNotResumable(
            f"Run {record.id} was not submitted to a queue: resume it here "
            f"(`orchestrion resume {record.id}`) rather than putting it back on one."
        )
    if record.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        raise RunNotResumable(
            f"Run {record.id} is {record.status.value}; there is nothing to continue."
        )
    return record.queue
