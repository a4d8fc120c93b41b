"""`MemoryBreakers`, the state machine alone: windows, cool-down, probe rounds."""

from __future__ import annotations

import pytest

from orchestrion import Breaker, BreakerOpen
from orchestrion.engine.breakers import MemoryBreakers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def trip(breakers: MemoryBreakers, config: Breaker, name: str = "m") -> None:
    for _ in range(config.failures):
        await breakers.release(await breakers.acquire(name, config), False)


async def test_failures_count_only_within_the_window() -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    config = Breaker(failures=3, window=10, cooldown=5)
    for _ in range(2):
        assert await breakers.release(await breakers.acquire("m", config), False) is None
    clock.now = 11  # both failures are out of the window now
    assert await breakers.release(await breakers.acquire("m", config), False) is None
    assert (await breakers.states())[0].to_json() == {
        "name": "m",
        "state": "closed",
        "failures": 1,
        "probe_in": 0.0,
    }
    await breakers.release(await breakers.acquire("m", config), False)
    transition = await breakers.release(await breakers.acquire("m", config), False)
    assert transition == ("closed", "open")


async def test_successes_and_client_errors_do_not_count() -> None:
    breakers = MemoryBreakers(Clock())
    config = Breaker(failures=2)
    for outcome in (True, None, False, True, None):
        assert await breakers.release(await breakers.acquire("m", config), outcome) is None
    assert (await breakers.states())[0].state == "closed"


async def test_half_open_admits_probes_per_round_not_per_moment() -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    config = Breaker(failures=1, cooldown=5, probes=2)
    await trip(breakers, config)
    clock.now = 6
    first = await breakers.acquire("m", config)
    assert first.probe and first.transition == ("open", "half-open")
    await breakers.release(first, True)
    second = await breakers.acquire("m", config)
    # Two probes this round already: a third call is refused even though none is in flight.
    with pytest.raises(BreakerOpen, match="half-open, and the 2 probe call"):
        await breakers.acquire("m", config)
    assert await breakers.release(second, True) == ("half-open", "closed")


async def test_a_probe_without_a_verdict_gives_its_slot_back() -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    config = Breaker(failures=1, cooldown=5)
    await trip(breakers, config)
    clock.now = 6
    probe = await breakers.acquire("m", config)
    await breakers.release(probe, None)  # e.g. cancelled, or a 400
    again = await breakers.acquire("m", config)
    assert again.probe
    assert await breakers.release(again, True) == ("half-open", "closed")


async def test_a_late_probe_of_an_earlier_round_changes_nothing() -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    config = Breaker(failures=1, cooldown=5, probes=2)
    await trip(breakers, config)
    clock.now = 6
    slow = await breakers.acquire("m", config)
    failing = await breakers.acquire("m", config)
    assert await breakers.release(failing, False) == ("half-open", "open")
    clock.now = 12  # round 2
    fresh = await breakers.acquire("m", config)
    assert await breakers.release(slow, True) is None  # round 1's answer: ignored
    assert (await breakers.states())[0].state == "half-open"
    await breakers.acquire("m", config)  # the second probe of round 2 is still free
    with pytest.raises(BreakerOpen):
        await breakers.acquire("m", config)
    assert await breakers.release(fresh, True) is None


async def test_the_open_message_says_why_and_when() -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    config = Breaker(failures=2, window=60, cooldown=30)
    await trip(breakers, config, "openai:gpt-x")
    with pytest.raises(BreakerOpen) as opened:
        await breakers.acquire("openai:gpt-x", config)
    assert str(opened.value) == (
        "The circuit for openai:gpt-x is open after 2 transient failures within 60 s; a probe "
        "call goes through in 30.0 s. The call was not sent. Add a fallback to the policy, or wait."
    )
    clock.now = 31
    await breakers.release(await breakers.acquire("openai:gpt-x", config), False)
    with pytest.raises(BreakerOpen, match="open again after a failed probe call"):
        await breakers.acquire("openai:gpt-x", config)
    await trip(breakers, config, "tool:search")
    with pytest.raises(BreakerOpen) as tool_open:
        await breakers.acquire("tool:search", config)
    assert str(tool_open.value).endswith("The call was not sent.")  # tools have no fallback
