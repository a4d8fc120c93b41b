"""A user's file with patterns and a workflow: each carries its output type where
it is determined. Checked, not run, by mypy --strict and pyright (strict)."""

from __future__ import annotations

from typing import Any, assert_type

import pydantic

from orchestrion import (
    JSON,
    Agent,
    BranchResult,
    Concurrent,
    GroupChat,
    Handoff,
    PeerNetwork,
    RunContext,
    RunResult,
    Runtime,
    Sequential,
    Supervisor,
    workflow,
)
from orchestrion.patterns import FunctionWorkflow


class Invoice(pydantic.BaseModel):
    total: float


class Report(pydantic.BaseModel):
    summary: str


extract = Agent(name="extract", model="test", output_type=Invoice)
review = Agent(name="review", model="test")
summarize = Agent(name="summarize", model="test", output_type=Report)

# Sequential: the last member's output (exactly, from a tuple).
pipeline = Sequential(name="docs", members=(extract, review, summarize))
assert_type(pipeline, Sequential[Report])
texts = Sequential(name="texts", members=[review, review])
assert_type(texts, Sequential[str])


def total(results: list[BranchResult]) -> float:
    return float(len(results))


# Concurrent: the aggregator's output; without one, the branch results as JSON.
fanout = Concurrent(name="fanout", branches=[extract, review])
assert_type(fanout, Concurrent[list[dict[str, JSON]]])
summed = Concurrent(name="summed", branches=[extract, review], aggregator=total)
assert_type(summed, Concurrent[float])
reported = Concurrent(name="reported", branches=[extract, review], aggregator=summarize)
assert_type(reported, Concurrent[Report])

# Supervisor: the manager's output.
planner = Agent(name="planner", model="test", output_type=Invoice)
team = Supervisor(name="team", manager=planner, workers=[review, summarize])
assert_type(team, Supervisor[Invoice])

# Handoff: what the agents' outputs have in common.
triage = Handoff(name="triage", agents=[review, Agent(name="billing", model="test")])
assert_type(triage, Handoff[str])


@workflow
async def monthly(ctx: RunContext[Any], input: str) -> Report:
    invoice = await ctx.run(extract, input)
    assert_type(invoice, Invoice)
    report = await ctx.run(pipeline, input, key="again")
    assert_type(report, Report)

    async def count() -> int:
        return 3

    async def fetch() -> Invoice:
        return Invoice(total=1.0)

    assert_type(await ctx.step("count", count), int)
    assert_type(await ctx.step("fetch", fetch), JSON)  # journaled as JSON, read back as it
    return report


assert_type(monthly, FunctionWorkflow[Report])


async def main(runtime: Runtime) -> None:
    assert_type(await runtime.run(pipeline, "Process the invoice."), RunResult[Report])
    assert_type((await runtime.run(team, "Plan.")).output, Invoice)
    assert_type((await runtime.run(monthly, "March.")).output, Report)
    assert_type((await runtime.run(fanout, "Go.")).output, list[dict[str, JSON]])
    chat = GroupChat(name="chat", participants=[review])
    assert_type((await runtime.run(chat, "Discuss.")).output, dict[str, JSON])
    network = PeerNetwork(name="peers", agents=[review])
    assert_type((await runtime.run(network, "Talk.")).output, str | dict[str, JSON])
