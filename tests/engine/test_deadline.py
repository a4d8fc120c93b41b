"""`Deadline` behaves like `asyncio.timeout`, on its own timer or on the coarse watch."""

from __future__ import annotations

import asyncio

import pytest

from orchestrion.engine import deadline as deadlines
from orchestrion.engine.deadline import Deadline


@pytest.fixture(params=["timer", "watch"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "watch":  # every deadline goes through the watch, ticking fast
        monkeypatch.setattr(deadlines, "COARSE", 0.0)
        monkeypatch.setattr(deadlines, "TICK", 0.005)
    return str(request.param)


async def test_a_deadline_that_runs_out_raises_timeout_error(mode: str) -> None:
    with pytest.raises(TimeoutError), Deadline(0.02) as d:
        await asyncio.Event().wait()
    assert d.expired


async def test_a_block_that_finishes_in_time_is_left_alone(mode: str) -> None:
    with Deadline(1.0) as d:
        await asyncio.sleep(0.01)
    assert not d.expired
    await asyncio.sleep(0.03)  # no late cancellation reaches the task


async def test_a_cancellation_from_outside_stays_a_cancellation(mode: str) -> None:
    inside = asyncio.Event()

    async def body() -> None:
        with Deadline(10.0):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_the_inner_one_fires(mode: str) -> None:
    with Deadline(10.0) as outer:
        with pytest.raises(TimeoutError), Deadline(0.02):
            await asyncio.Event().wait()
        await asyncio.sleep(0)
    assert not outer.expired


async def test_the_watch_stops_ticking_when_no_deadline_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deadlines, "COARSE", 0.0)
    monkeypatch.setattr(deadlines, "TICK", 0.005)
    with Deadline(10.0):
        await asyncio.sleep(0)
    # A private probe: whether the shared watch still has a timer armed shows
    # nowhere through `Deadline`, which only fires or does not.
    watch = deadlines._watch(asyncio.get_running_loop())
    assert watch.deadlines == {}
    await asyncio.sleep(0.02)
    assert watch.armed is False


def test_a_loop_that_is_done_with_is_not_kept_alive() -> None:
    import gc

    async def one_call() -> None:
        with Deadline(60.0):  # the coarse watch: the default model timeout
            await asyncio.sleep(0)

    for _ in range(20):
        asyncio.run(one_call())
    gc.collect()
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    assert len(loops) <= 1  # at most pytest's own
    assert len(deadlines._watches) <= 1  # (private: the watches kept per loop)
