"""The `Store` protocol every backend implements, and `open_store(url)`.

Backends (`memory://`, `sqlite:///path.db`, `postgresql://`) are imported
lazily by URL scheme; third parties register through the `orchestrion.stores`
entry-point group (name = scheme, value = a callable taking the URL and
returning a `Store`). One conformance suite (`tests/stores/test_conformance.py`)
runs against each.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Protocol

from orchestrion._json import JSON
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus
from orchestrion.errors import UserError
from orchestrion.redact import redact_url

DEFAULT_LEASE_TTL = 30.0
"""Seconds a claim lasts unless renewed; a runtime renews its leases every third of it."""


class Store(Protocol):
    """Runs and their journals, and who works on each run.

    Ownership: a process works on a run only while it holds the run's lease
    (`create_run(owner=...)` or `claim`). Each claim increments the run's
    fencing token; an `append` or `update_run` that carries a token refuses, in
    the same transaction as the write, a token that is no longer the run's
    (`LeaseLost`). So a process that stalled past its lease, or whose run was
    cancelled elsewhere, cannot write another step. Writes without a token are
    unfenced (tests, repairs).
    """

    url: str
    """Where the data lives, e.g. `sqlite:///.orchestrion/orchestrion.db`. No secrets."""

    async def create_run(
        self,
        run: RunRecord,
        entries: Sequence[Entry] = (),
        *,
        owner: str | None = None,
        ttl: float = DEFAULT_LEASE_TTL,
    ) -> Lease | None:
        """Insert a new run (and, for forks, its copied journal prefix) atomically.
        With `owner`, the run is claimed by it in the same transaction (token 1)
        and the lease returned. Raises `StoreError` if the id exists."""
        ...

    async def claim(
        self, run_id: str, owner: str, *, ttl: float = DEFAULT_LEASE_TTL, steal: bool = False
    ) -> RunRecord:
        """Make `owner` the run's owner for `ttl` seconds, atomically: the token
        goes up by one, and the run's record is returned with the new lease.
        Raises `RunBusy` while another owner's lease is live (unless `steal`:
        a cancel takes over), `RunNotFound` if there is no such run."""
        ...

    async def renew(self, leases: Mapping[str, int], *, ttl: float = DEFAULT_LEASE_TTL) -> set[str]:
        """Extend the leases of runs (run id -> token) to `ttl` seconds from now;
        return the ids of those whose token is no longer current (lost)."""
        ...

    async def release(self, run_id: str, token: int) -> None:
        """End the lease with `token`, if it is still the run's (else nothing)."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        """The run submitted with this idempotency key, if any."""
        ...

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first."""
        ...

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: JSON = None,
        error: JSON = None,
        pending: list[JSON] | None = None,
        usage: list[JSON] | None = None,
        token: int | None = None,
        release: bool = False,
        trace: str | None = None,
    ) -> None:
        """Set a run's status and outcome; durable when it returns. With `token`,
        refused (`LeaseLost`) unless it is the run's; `release` ends the lease too.
        `trace` sets the run's trace context if it has none (one set stays)."""
        ...

    async def append(
        self, run_id: str, entries: Sequence[Entry], *, durable: bool, token: int | None = None
    ) -> None:
        """Append journal entries. With `durable=False` the entries may be written
        later (group commit) and the call does not wait (a refusal then reaches
        the run's next call); with `durable=True` it returns once they are
        committed. Order of appends is preserved. With `token`, refused
        (`LeaseLost`) unless it is the run's."""
        ...

    async def load(self, run_id: str) -> list[Entry]:
        """The whole journal of a run, in `seq` order, including entries appended
        without waiting."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release resources."""
        ...


DEFAULT_STORE_URL = "sqlite:///.orchestrion/orchestrion.db"

StoreFactory = Callable[[str], Store]

_BUILTIN = {
    "memory": "orchestrion.stores.memory:MemoryStore.from_url",
    "sqlite": "orchestrion.stores.sqlite:SQLiteStore.from_url",
    "postgresql": "orchestrion.stores.postgres:PostgresStore.from_url",
    "postgres": "orchestrion.stores.postgres:PostgresStore.from_url",
}
_registered: dict[str, StoreFactory] = {}


def register_store(scheme: str, factory: StoreFactory) -> None:
    _registered[scheme] = factory


def _resolve(path: str) -> StoreFactory:
    module, _, attr = path.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def open_store(url: str | None = None, *, read_only: bool = False) -> Store:
    """The store for `url` (default: the embedded SQLite file). `read_only`
    opens an existing store without creating or changing anything, where the
    backend supports it (the built-in ones do)."""
    url = url or DEFAULT_STORE_URL
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise UserError(
            f"Store URL {redact_url(url)!r} has no scheme: use memory://, sqlite:///path/to/file.db "
            "or a registered scheme."
        )
    if scheme in _registered:
        return _registered[scheme](url)
    if scheme in _BUILTIN:
        builtin = _resolve(_BUILTIN[scheme])
        return builtin(url, read_only=read_only) if read_only else builtin(url)  # type: ignore[call-arg]
    for ep in entry_points(group="orchestrion.stores"):
        if ep.name == scheme:
            factory: StoreFactory = ep.load()
            _registered[scheme] = factory
            return factory(url)
    raise UserError(
        f"Unknown store scheme {scheme!r} in {redact_url(url)!r}: use memory://, "
        "sqlite:///path.db or postgresql://user@host/db."
    )
