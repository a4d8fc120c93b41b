"""Starting runs: a new run's record, whether a request repeats the one that used
its idempotency key (for `Runtime.run` and `Runtime.submit` alike), the checks of
a runtime's settings and secrets, and the reservation of a run working in a process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, MutableMapping
from secrets import token_hex
from typing import TYPE_CHECKING, Any

from orchestrion._json import JSONInput, short_json, to_jsonable
from orchestrion.agent import Agent
from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.store import DEFAULT_LEASE_TTL, Store
from orchestrion.engine.targets import is_runnable, normalize_target
from orchestrion.errors import RunNotResumable, UserError
from orchestrion.policy import Policy
from orchestrion.redact import SupportsSecret, register_secret

if TYPE_CHECKING:
    from orchestrion.engine.tracing import Tracing
    from orchestrion.telemetry.instrument import Instrumentation


def new_record(
    runnable: object,
    input: JSONInput,
    run_id: str | None,
    *,
    status: RunStatus,
    target: str | None = None,
    idempotency_key: str | None = None,
    queue: str | None = None,
    priority: int = 0,
) -> RunRecord:
    """The record of a new run of `runnable` on `input`, both checked first."""
    if not is_runnable(runnable):
        raise UserError(
            f"Cannot run {runnable!r}: pass an Agent or a pattern (an object with a name "
            "and an async invoke(ctx, input))."
        )
    try:
        data = to_jsonable(input, "input")
    except TypeError as exc:
        raise UserError(f"Run input must be JSON data (str, dict, list, ...): {exc}") from None
    now = time.time()
    return RunRecord(
        id=run_id or token_hex(8),
        name=runnable.name,
        status=status,
        input=data,
        target=normalize_target(target) if target else None,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        queue=queue,
        priority=priority,
    )


def check_same_request(found: RunRecord, key: str, name: object, input: JSONInput) -> None:
    """Refuse a request that reuses idempotency key `key` (held by run `found`) for
    another runnable or input."""
    try:
        data: JSONInput = to_jsonable(input)
    except TypeError:
        data = input
    if found.name != name or found.input != data:
        raise UserError(
            f"Idempotency key {key!r} was used for run {found.id} ({found.name!r} on "
            f"{short_json(found.input)}); this call runs {name!r} on {short_json(data)}. "
            "A new request needs a new key."
        )


async def find_submitted(
    store: Store, key: str, runnable: object, input: JSONInput
) -> RunRecord | None:
    """The run started with idempotency key `key`, if any: refused (`UserError`) if
    it ran something else or on another input."""
    record = await store.find_run(idempotency_key=key)
    if record is not None:
        check_same_request(record, key, getattr(runnable, "name", runnable), input)
    return record


def register_given(secrets: Iterable[str | SupportsSecret | None]) -> None:
    """`register_secret` for the `secrets=` of a `Runtime`: a list, not one value."""
    if isinstance(secrets, str) or hasattr(secrets, "get_secret_value"):
        raise UserError(
            "Runtime(secrets=...) takes a list of secrets, not one (a string would be "
            "read as its characters): write secrets=[value]."
        )
    try:
        register_secret(*secrets)
    except TypeError as exc:
        raise UserError(f"Runtime(secrets=...): {exc}") from None


def check_settings(lease_ttl: object, durability: object, policy: object) -> None:
    """Refuse a `Runtime`'s settings that cannot work, saying what to give."""
    if isinstance(lease_ttl, bool) or not (
        isinstance(lease_ttl, int | float) and 0.1 <= lease_ttl <= 86_400
    ):
        raise UserError(
            f"lease_ttl={lease_ttl!r}: give the seconds a run's lease lasts unless renewed, "
            f"from 0.1 to 86400 (a day; default {DEFAULT_LEASE_TTL:g})."
        )
    if durability not in ("sync", "async"):
        raise UserError(f"durability must be 'sync' or 'async', not {durability!r}.")
    if policy is not None and not isinstance(policy, Policy):
        raise UserError(f"Runtime(policy={policy!r}): give a Policy(...).")
    if policy is not None and any(isinstance(f, Agent) for f in policy.fallback or ()):
        raise UserError(
            "Runtime(policy=...): the runtime's fallback lists models; give fallback "
            "agents to an agent's policy."
        )


class Working:
    """A run reserved for the task working on it in this process, while in the `with`
    (`Runtime._working`). A class rather than a generator's context manager: it is
    held for the whole run, by every run at once."""

    __slots__ = ("_active", "_finished", "run_id")

    def __init__(
        self,
        active: MutableMapping[str, asyncio.Task[Any]],
        finished: MutableMapping[str, asyncio.Event],
        run_id: str,
    ) -> None:
        self._active = active
        self._finished = finished
        self.run_id = run_id

    def __enter__(self) -> str:
        run_id = self.run_id
        if run_id in self._active:
            raise RunNotResumable(
                f"Run {run_id} is already working in this process: wait for it to finish "
                f"or stop it with `runtime.cancel({run_id!r})`."
            )
        task = asyncio.current_task()
        assert task is not None, "runs work inside an asyncio task"
        self._active[run_id] = task
        return run_id

    def __exit__(self, *exc: object) -> None:
        del self._active[self.run_id]
        if (finished := self._finished.pop(self.run_id, None)) is not None:
            finished.set()


def tracing_for(settings: Instrumentation) -> Tracing:
    """A runtime's tracer, made only when asked for: it imports OpenTelemetry."""
    from orchestrion.engine.tracing import Tracing

    return Tracing(settings)
