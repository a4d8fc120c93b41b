"""The examples run on the memory store, offline on their stand-in models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrion import Runtime


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with Runtime("memory://") as rt:
        yield rt
