"""Targets for the CLI's bad-input tests: text that looks like markup, long names, a failing tool."""

from typing import Any

from orchestrion import Agent, BudgetExceeded, RunContext, tool, workflow
from orchestrion.testing import FunctionModel, call

MARKUP = "cell [/td] and [link=https://x]click[/link] [bold]"


@tool
async def scrape() -> str:
    """Scrape a table."""
    raise ValueError(MARKUP)  # raised here


markup = Agent(name="scraper", model=FunctionModel(lambda r: call("scrape")), tools=[scrape])

said = Agent(name="sayer", model=FunctionModel(lambda r: MARKUP))


@workflow
async def stopping(ctx: RunContext[None], input: Any) -> Any:
    await ctx.run(said, "go")
    raise BudgetExceeded(f"stopped at {MARKUP}", budget="steps", steps_done=1)


LONG = "a" * 64


@tool(name="t" * 64)
async def long_tool() -> str:
    """A tool with the longest name."""
    return "x " * 200


def _long_policy(request):  # type: ignore[no-untyped-def]
    from orchestrion.messages import ToolResult

    if any(isinstance(m, ToolResult) for m in request.messages):
        return "done"
    return call("t" * 64, id="c" * 40)


long_names = Agent(name=LONG, model=FunctionModel(_long_policy), tools=[long_tool])
