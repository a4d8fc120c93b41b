"""A stored run's graph, with the runs it queued: what `orchestrion show RUN --graph` draws."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrion.engine.result import StepInfo
from orchestrion.engine.runtime import Runtime
from orchestrion.errors import RunNotFound
from orchestrion.graph.flow import flow, submitted_runs
from orchestrion.graph.model import Graph

MAX_RUNS = 200
"""The most runs queued by a run (theirs included) read into its graph."""


async def run_flow(runtime: Runtime, run_id: str) -> Graph:
    """The flow of run `run_id` and of the runs it queued, theirs too (a `PeerNetwork`'s
    agents in their own runs), up to `MAX_RUNS` of them."""
    record = await runtime.get(run_id)
    steps = await runtime.history(run_id)
    submitted: dict[str, Sequence[StepInfo]] = {}
    waiting = submitted_runs(steps)
    while waiting and len(submitted) < MAX_RUNS:
        child = waiting.pop(0)
        if child in submitted or child == run_id:
            continue
        try:
            submitted[child] = await runtime.history(child)
        except RunNotFound:
            continue  # queued, then removed from the store
        waiting += submitted_runs(submitted[child])
    return flow(f"{record.name}, run {record.id}", steps, submitted)
