"""Small helpers shared by the engine tests (not a test module)."""

from orchestrion import ModelRequest, Runtime
from orchestrion.messages import ToolResult, UserMessage


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
