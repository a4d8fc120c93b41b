"""Provider tests talk to a local fake server, never to a real provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrion.testing import allow_model_requests

from .fake_servers import FakeServer


@pytest.fixture(autouse=True)
def _allow_requests() -> Iterator[None]:
    # The suite's conftest forbids real model requests; these go to a local fake.
    with allow_model_requests():
        yield


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s
