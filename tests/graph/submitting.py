"""A team whose manager queues a review as a separate run (`ctx.submit` in a tool)."""

from __future__ import annotations

from orchestrion import Agent, RunContext, Supervisor, tool
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call

reviewer = Agent(name="reviewer", model=FunctionModel(lambda request: "looks good"))


@tool
async def queue_review(ctx: RunContext[object], text: str) -> str:
    """Queue a review of `text`."""
    return await ctx.submit(reviewer, text, name="review")


def _boss(request: ModelRequest) -> object:
    if any(isinstance(m, ToolResult) for m in request.messages):
        return "queued"
    return call("queue_review", {"text": "the draft"}, id="q1")


office = Supervisor(
    name="office",
    manager=Agent(name="boss", model=FunctionModel(_boss), tools=[queue_review]),
    workers=[reviewer],
)
