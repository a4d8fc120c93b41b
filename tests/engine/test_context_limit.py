"""Context control: request sizes in events, and per-agent limits."""

from __future__ import annotations

import pytest

from orchestrion import Agent, ContextLimit, RunStatus, Runtime, StepStarted, UserError, tool
from orchestrion.messages import ModelResponse, UserMessage
from orchestrion.testing import FunctionModel, ScriptedModel, call


@tool
def read_page(n: int) -> str:
    """A long page."""
    return f"page {n}: " + "x" * 800


def reader(limit: ContextLimit | None, pages: int = 4) -> tuple[Agent[str], ScriptedModel]:
    model = ScriptedModel([call("read_page", {"n": i}) for i in range(pages)] + ["read them all"])
    return Agent(name="r", model=model, tools=[read_page], context_limit=limit), model


async def test_every_model_request_reports_its_estimated_size() -> None:
    events: list[object] = []
    runtime = Runtime("memory://", sinks=[events.append])
    agent, _ = reader(None, pages=2)
    await runtime.run(agent, "read")
    sizes = [e.size for e in events if isinstance(e, StepStarted) and e.kind == "model"]
    assert len(sizes) == 3 and 0 < sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] - sizes[1] > 190, "a page of ~800 characters adds ~200 tokens"


async def test_drop_oldest_keeps_the_task_and_the_latest_exchange(runtime: Runtime) -> None:
    agent, model = reader(ContextLimit(max_tokens=600))
    result = await runtime.run(agent, "read everything")
    assert result.output == "read them all"
    last = model.requests[-1].messages
    assert last[0] == UserMessage("read everything")
    kept_pages = [m.content[:6] for m in last if not isinstance(m, (UserMessage, ModelResponse))]
    assert kept_pages[-1] == "page 3" and "page 0" not in kept_pages


async def test_a_summarizer_replaces_what_was_dropped(runtime: Runtime) -> None:
    seen: list[str] = []

    def summarize(request):  # type: ignore[no-untyped-def]
        seen.append(request.messages[0].content)
        return "pages 0-1 were x-filled"

    summarizer = Agent(name="summarizer", model=FunctionModel(summarize))
    agent, model = reader(ContextLimit(max_tokens=600, summarizer=summarizer))
    result = await runtime.run(agent, "read everything")
    assert result.output == "read them all"
    assert seen and "tool read_page: page 0:" in seen[0]
    summaries = [
        m
        for m in model.requests[-1].messages
        if isinstance(m, UserMessage) and "[summary" in m.content
    ]
    assert summaries and "x-filled" in summaries[-1].content
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert any(k.startswith("r/summary-") and k.endswith("/summarizer/turn-1/model") for k in keys)


async def test_fail_ends_the_run_with_context_too_large(runtime: Runtime) -> None:
    agent, _ = reader(ContextLimit(max_tokens=300, action="fail"))
    result = await runtime.run(agent, "read")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ContextTooLarge"
    assert "over its ContextLimit max_tokens=300" in result.error["message"]


async def test_too_large_even_after_dropping(runtime: Runtime) -> None:
    agent, _ = reader(ContextLimit(max_tokens=100))
    result = await runtime.run(agent, "read")
    assert result.error is not None and "still about" in result.error["message"]


def test_limits_are_checked_at_definition_time() -> None:
    with pytest.raises(UserError, match="max_tokens=0 must be positive"):
        ContextLimit(max_tokens=0)
    with pytest.raises(UserError, match="action must be"):
        ContextLimit(max_tokens=10, action="truncate")  # type: ignore[arg-type]
