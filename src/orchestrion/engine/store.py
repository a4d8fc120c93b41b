"""The `Store` protocol every backend implements, and `open_store(url)`.

Backends (`memory://`, `sqlite:///path.db`, later `postgresql://`) are imported
lazily by URL scheme; third parties register through the `orchestrion.stores`
entry-point group (name = scheme, value = a callable taking the URL and
returning a `Store`). One conformance suite (`tests/stores/test_conformance.py`)
runs against each.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Protocol

from orchestrion._json import JSON
from orchestrion.engine.journal import Entry, RunRecord, RunStatus
from orchestrion.errors import UserError
from orchestrion.redact import redact_url


class Store(Protocol):
    url: str
    """Where the data lives, e.g. `sqlite:///.orchestrion/orchestrion.db`. No secrets."""

    async def create_run(self, run: RunRecord, entries: Sequence[Entry] = ()) -> None:
        """Insert a new run (and, for forks, its copied journal prefix) atomically.
        Raises `StoreError` if the id exists."""
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
    ) -> None:
        """Set a run's status and outcome; durable when it returns."""
        ...

    async def append(self, run_id: str, entries: Sequence[Entry], *, durable: bool) -> None:
        """Append journal entries. With `durable=False` the entries may be written
        later (group commit) and the call does not wait; with `durable=True` it
        returns once they are committed. Order of appends is preserved."""
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


def open_store(url: str | None = None) -> Store:
    """The store for `url` (default: the embedded SQLite file)."""
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
        return _resolve(_BUILTIN[scheme])(url)
    for ep in entry_points(group="orchestrion.stores"):
        if ep.name == scheme:
            factory: StoreFactory = ep.load()
            _registered[scheme] = factory
            return factory(url)
    raise UserError(
        f"Unknown store scheme {scheme!r} in {redact_url(url)!r}: use memory:// or sqlite:///path.db."
    )
