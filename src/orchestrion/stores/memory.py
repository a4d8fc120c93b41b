"""An in-process store for tests and ephemeral runs; nothing survives the process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from orchestrion._json import JSON
from orchestrion.engine.journal import Entry, RunRecord, RunStatus
from orchestrion.errors import StoreError


class MemoryStore:
    url = "memory://"

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._journals: dict[str, list[Entry]] = {}

    async def create_run(self, run: RunRecord, entries: Sequence[Entry] = ()) -> None:
        if run.id in self._runs:
            raise StoreError(f"A run with id {run.id!r} already exists; choose another id.")
        key = run.idempotency_key
        if key is not None and any(r.idempotency_key == key for r in self._runs.values()):
            raise StoreError(f"A run with idempotency key {key!r} already exists.")
        self._runs[run.id] = dataclasses.replace(run, pending=list(run.pending))
        self._journals[run.id] = list(entries)

    async def get_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return None if run is None else dataclasses.replace(run, pending=list(run.pending))

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        for run in self._runs.values():
            if run.idempotency_key == idempotency_key:
                return dataclasses.replace(run)
        return None

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        runs = [r for r in self._runs.values() if status is None or r.status == status]
        runs.reverse()  # newest first, ties by insertion order like the SQL stores
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [dataclasses.replace(r) for r in runs[:limit]]

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: JSON = None,
        error: JSON = None,
        pending: list[JSON] | None = None,
        usage: list[int] | None = None,
    ) -> None:
        run = self._runs.get(run_id)
        if run is None:
            raise StoreError(f"Cannot update run {run_id!r}: it does not exist.")
        run.status = status
        run.output = output
        run.error = error
        run.pending = list(pending or [])
        if usage is not None:
            run.usage = list(usage)
        run.updated_at = time.time()

    async def append(self, run_id: str, entries: Sequence[Entry], *, durable: bool) -> None:
        try:
            self._journals[run_id].extend(entries)
        except KeyError:
            raise StoreError(f"Cannot append to run {run_id!r}: it does not exist.") from None

    async def load(self, run_id: str) -> list[Entry]:
        return list(self._journals.get(run_id, ()))

    async def close(self) -> None:
        return None
