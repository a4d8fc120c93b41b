"""Shared fixtures: every engine test runs on each store; real model requests are forbidden."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrion import Runtime
from orchestrion.engine.store import Store, open_store
from orchestrion.testing import forbid_model_requests

forbid_model_requests()

STORE_KINDS = ["memory", "sqlite"]
"""The stores every engine test and the store conformance suite run on. To add a
backend, add its kind here and its opening to `make_store` (as a `pytest.param`
with a skip mark if it needs a service that may be absent, e.g. a local PostgreSQL)."""


def make_store(kind: str, tmp_path: Path) -> Store:
    if kind == "memory":
        return open_store("memory://")
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'orchestrion.db'}")
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A `Store` of each kind in turn (closed after the test). Tests of one
    backend alone name theirs differently (`sqlite_store`); a URL is `store_url`."""
    s = make_store(store_kind, tmp_path)
    yield s
    await s.close()


@pytest.fixture
async def runtime(store: Store) -> AsyncIterator[Runtime]:
    rt = Runtime(store)
    yield rt
    # The fixture owns the store; closing it twice is harmless.
    await rt.close()


def in_ci() -> bool:
    return os.environ.get("CI") == "true"
