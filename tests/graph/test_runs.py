"""`run_flow`: a stored run's graph joined with the runs it queued: a `PeerNetwork`
whose agents run in their own runs on workers, mail through Redis Streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrion import PeerNetwork, RunStatus, Runtime
from orchestrion.engine.targets import load_target
from orchestrion.graph.runs import run_flow
from orchestrion.graph.structure import INPUT
from tests.bus.test_redis_mailboxes import TARGET, work
from tests.workers import peers


@pytest.fixture(autouse=True)
async def close_mailboxes() -> AsyncIterator[None]:
    yield
    for network in (peers.ping_pong, load_target(f"{TARGET}:ping_pong")):
        assert isinstance(network, PeerNetwork) and network.mailboxes is not None
        await network.mailboxes.aclose()  # their clients of this test's event loop


async def test_a_network_of_separate_runs_is_one_graph_of_its_mail() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 3")
        record = await work(runtime, run_id)
        assert record.status is RunStatus.COMPLETED, record.error
        graph = await run_flow(runtime, run_id)
        peers_usage = [r.usage for r in await runtime.list() if r.name.startswith("ping-pong.")]

    assert graph.title == f"ping-pong, run {run_id}"
    edges = {key: e.flowed.count for key, e in graph.edges.items() if e.flowed is not None}
    assert edges == {
        (INPUT, "alice", "input"): 1,  # the network's input, posted to alice
        ("alice", "bob", "messages"): 3,
        ("bob", "alice", "messages"): 3,
    }
    alice, bob = graph.nodes["alice"].flowed, graph.nodes["bob"].flowed
    assert alice is not None and bob is not None
    assert (alice.count, bob.count) == (4, 3)  # turns: woken by the input and 3 pongs
    assert ("alice", "alice:finish", "calls") in graph.edges
    # each agent's run is a box inside the network's
    assert (graph.nodes["alice"].cluster, graph.nodes["bob"].cluster) == (
        "ping-pong:ping-pong.alice",
        "ping-pong:ping-pong.bob",
    )
    assert graph.clusters["ping-pong:ping-pong.bob"].parent == "ping-pong"
    tokens = sum(u[0] + u[1] for u in peers_usage)
    assert alice.usage.total_tokens + bob.usage.total_tokens == tokens
    # what each agent's turns cost is on the mail that woke them
    woken = sum(e.flowed.usage.total_tokens for e in graph.edges.values() if e.flowed)
    assert woken == tokens


async def test_a_run_queued_by_an_agent_s_tool_is_reached_from_that_agent() -> None:
    target = f"{Path(__file__).parent / 'submitting.py'}:office"
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(target, "write it")
        assert (await work(runtime, run_id)).status is RunStatus.COMPLETED
        [queued_run] = [r.id for r in await runtime.list() if r.name == "reviewer"]
        review = await work(runtime, queued_run)
        assert review.status is RunStatus.COMPLETED
        graph = await run_flow(runtime, run_id)

    queued = graph.edges[("boss", "reviewer", "submits")].flowed
    assert queued is not None and queued.count == 1
    assert queued.usage.total_tokens == review.usage[0] + review.usage[1] > 0
    assert (INPUT, "reviewer", "input") not in graph.edges
