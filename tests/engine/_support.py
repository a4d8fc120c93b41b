"""Small helpers shared by the engine tests (not a test module)."""

from orchestrion import Agent, ModelRequest, Runtime, tool
from orchestrion.messages import ToolResult, UserMessage
from orchestrion.testing import ScriptedModel, call


class Crash(BaseException):
    """Stands in for a process dying mid-step: not an `Exception`, so nothing handles it."""


def tool_results(request: ModelRequest) -> list[ToolResult]:
    """The tool results a model request carries, in conversation order."""
    return [m for m in request.messages if isinstance(m, ToolResult)]


def last_tool_result(request: ModelRequest) -> ToolResult:
    results = tool_results(request)
    assert results, f"request carries no tool result: {request.messages!r}"
    return results[-1]


def user_messages(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if isinstance(m, UserMessage)]


async def journal_snapshot(runtime: Runtime, run_id: str) -> tuple[object, ...]:
    """Everything a bad answer must not change: the step history and the raw journal."""
    history = await runtime.history(run_id)
    entries = await runtime.store.load(run_id)
    return tuple(history), tuple(entries)


def approving_agent(name: str = "a") -> Agent[None, str]:
    """An agent that calls a write tool needing approval (`transfer`), then says "ok"."""

    @tool(effect="write", approval=True)
    def transfer(amount: float) -> str:
        """Moves money."""
        return "moved"

    model = ScriptedModel([call("transfer", {"amount": 1.0}), "ok"])
    return Agent(name=name, model=model, tools=[transfer])


def payer_that_dies_once(amount: float = 1.0) -> Agent[None, str]:
    """An agent `payer` that calls a write tool `pay`, whose first call dies mid-payment
    (`Crash`) and whose next one pays; then it says "done"."""
    calls = 0

    @tool(effect="write")
    def pay(amount: float) -> str:
        """Pays."""
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Crash("the process died mid-payment")
        return "paid"

    model = ScriptedModel([call("pay", {"amount": amount}), "done"])
    return Agent(name="payer", model=model, tools=[pay])
