"""Targets for CLI tests."""

from orchestrion import Agent, RunContext, Supervisor, tool
from orchestrion.testing import FunctionModel, call


@tool(effect="write", approval=True)
async def transfer(ctx: RunContext[None], amount: float) -> str:
    """Move money."""
    return f"moved {amount}"


@tool
async def ask_human(ctx: RunContext[None], question: str) -> str:
    """Ask the operator a question."""
    return str(await ctx.interrupt({"question": question}, name="question"))


def _policy(request):  # type: ignore[no-untyped-def]
    from orchestrion.messages import ToolResult

    results = [m for m in request.messages if isinstance(m, ToolResult)]
    if not results:
        return call("transfer", {"amount": 10}, id="t1")
    return f"result: {results[-1].content}"


def _ask_policy(request):  # type: ignore[no-untyped-def]
    from orchestrion.messages import ToolResult

    results = [m for m in request.messages if isinstance(m, ToolResult)]
    if not results:
        return call("ask_human", {"question": "Which account?"}, id="q1")
    return f"human said {results[-1].content}"


echo = Agent(name="echo", model=FunctionModel(lambda r: f"echo: {r.messages[0].content}"))
mover = Agent(name="mover", model=FunctionModel(_policy), tools=[transfer])
asker = Agent(name="asker", model=FunctionModel(_ask_policy), tools=[ask_human])
broken = Agent(name="broken", model=FunctionModel(lambda r: call("nope", "{}")), max_turns=2)
not_runnable = 42


def _flaky_model():  # type: ignore[no-untyped-def]
    from orchestrion import Policy, Retry, with_policy
    from orchestrion.testing import Faults, FaultyModel, ServerError

    primary = FaultyModel(
        FunctionModel(lambda r: "unreachable", name="primary"),
        Faults.rate(1.0, kinds=[ServerError(503)]),
    )
    backup = FunctionModel(lambda r: "from the backup", name="backup")
    retry = Retry(attempts=2, initial=0.001, jitter=0)
    return with_policy(primary, Policy(retry=retry, fallback=[backup]))


flaky = Agent(name="flaky", model=_flaky_model())


@tool
async def look(n: int) -> str:
    """Look something up."""
    return f"saw {n}"


def _looping_policy(request):  # type: ignore[no-untyped-def]
    from orchestrion.messages import ToolResult

    seen = sum(isinstance(m, ToolResult) for m in request.messages)
    return call("look", {"n": seen}) if seen < 5 else f"done after {seen} looks"


looper = Agent(name="looper", model=FunctionModel(_looping_policy), tools=[look], loop_guard=None)


def _lead_policy(request):  # type: ignore[no-untyped-def]
    from orchestrion.messages import ToolResult

    results = [m for m in request.messages if isinstance(m, ToolResult)]
    if not results:
        return call("delegate_to_echo", {"task": "hi"}, id="d1")
    return f"lead heard {results[-1].content}"


desk = Supervisor(
    name="desk",
    manager=Agent(name="lead", model=FunctionModel(_lead_policy)),
    workers=[echo, mover],
)
