"""Run events on the local Redis: published by a sink, followed from elsewhere,
listed with their streams; a Redis that is away never fails a run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from orchestrion import Agent, Runtime, tool
from orchestrion.bus.redis_streams import RedisEvents, follow, streams
from orchestrion.testing import ScriptedModel, call

REDIS_URL = os.environ.get("ORCHESTRION_TEST_REDIS", "redis://127.0.0.1:6379/0")


@tool
async def lookup(i: int) -> str:
    """Look up item i."""
    return f"item {i}"


def agent() -> Agent[None, str]:
    return Agent(
        name="looker",
        model=ScriptedModel([call("lookup", {"i": 1}), "done"]),
        tools=[lookup],
    )


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    import redis.asyncio

    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_runs_events_are_published_and_followed_in_order(prefix: str) -> None:
    sink = RedisEvents(REDIS_URL, prefix=prefix)
    async with Runtime("memory://", sinks=[sink]) as runtime:
        result = await runtime.run(agent(), "go", run_id="r1")
    await sink.aclose()
    assert sink.dropped == 0

    events = [e async for e in follow(REDIS_URL, "r1", prefix=prefix)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert kinds.count("StepCompleted") == 3  # model, tool, model
    assert events[-1]["status"] == "completed" and events[-1]["output"] == result.output
    [stream] = await streams(REDIS_URL, prefix)
    assert stream["stream"] == f"{prefix}:events:r1" and stream["length"] == len(events)

    command = ("-m", "orchestrion", "bus", "--bus", REDIS_URL, "--prefix", prefix, "--json")
    listed = await asyncio.create_subprocess_exec(
        sys.executable, *command, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await listed.communicate()
    assert listed.returncode == 0
    assert json.loads(out) == {"streams": [{**stream, "groups": []}], "networks": []}


async def test_following_waits_for_events_published_later(prefix: str) -> None:
    async def watch() -> list[str]:
        return [e["type"] async for e in follow(REDIS_URL, "late", prefix=prefix, block=0.1)]

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)  # following before the run exists
    sink = RedisEvents(REDIS_URL, prefix=prefix)
    async with Runtime("memory://", sinks=[sink]) as runtime:
        await runtime.run(agent(), "go", run_id="late")
    await sink.aclose()
    kinds = await asyncio.wait_for(watcher, 10)
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"


async def test_a_redis_that_is_away_drops_events_and_never_fails_the_run() -> None:
    sink = RedisEvents("redis://127.0.0.1:1/0")  # nothing listens there
    async with Runtime("memory://", sinks=[sink]) as runtime:
        result = await runtime.run(agent(), "go")
    await sink.aclose()
    assert result.output == "done"
    assert sink.dropped > 0
