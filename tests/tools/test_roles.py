"""Control tools (handoff, delegation, final answer) are told apart by a typed role,
never by their names: a user's tool that happens to share a prefix is a tool."""

from __future__ import annotations

import pydantic
import pytest

from orchestrion import Agent, Runtime, Tool, UserError, tool
from orchestrion.messages import ToolResult
from orchestrion.testing import ScriptedModel, call
from orchestrion.tools.roles import Delegate, FinalResult, Transfer


class Invoice(pydantic.BaseModel):
    total: float


def test_an_agent_knows_the_role_of_each_control_tool() -> None:
    @tool
    def lookup(q: str) -> str:
        return q

    agent = Agent(name="a", handoffs=["billing"], output_type=Invoice, tools=[lookup])
    assert agent.tool_roles == {
        "transfer_to_billing": Transfer(target="billing"),
        "final_result": FinalResult(),
    }
    assert "lookup" not in agent.tool_roles


@pytest.mark.parametrize("name", ["transfer_to_archive", "final_result", "delegate_to_printer"])
async def test_a_user_tool_named_like_a_control_tool_is_an_ordinary_tool(
    runtime: Runtime, name: str
) -> None:
    """The loop guard watches it like any tool: the third identical call is warned about."""

    def archive(doc: str) -> str:
        return "archived"

    user_tool = Tool(function=archive, name=name)
    model = ScriptedModel([call(name, {"doc": "d1"})] * 3 + ["done"])
    result = await runtime.run(Agent(name="clerk", model=model, tools=[user_tool]), "file it")
    assert result.output == "done"
    third = model.requests[3].messages[-1]
    assert isinstance(third, ToolResult) and third.content.startswith("archived\n\n[loop guard]")


async def test_a_user_tool_named_delegate_to_is_no_delegation(runtime: Runtime) -> None:
    """The same result for different tasks is a circling delegation only for a real one."""

    @tool
    def delegate_to_printer(doc: str) -> str:
        return "queued"

    script = [call("delegate_to_printer", {"doc": f"d{i}"}) for i in range(3)] + ["done"]
    model = ScriptedModel(script)
    agent = Agent(name="clerk", model=model, tools=[delegate_to_printer])
    assert (await runtime.run(agent, "print them")).output == "done"
    results = [m for m in model.requests[3].messages if isinstance(m, ToolResult)]
    assert [r.content for r in results] == ["queued"] * 3


@pytest.mark.parametrize("role", [Transfer(target="b"), FinalResult()])
def test_only_the_agent_makes_transfer_and_final_result_tools(
    role: Transfer | FinalResult,
) -> None:
    def go() -> str:
        return ""

    with pytest.raises(UserError, match="role"):
        Agent(name="a", tools=[Tool(function=go, role=role)])


def test_a_role_is_a_tool_role() -> None:
    def go() -> str:
        return ""

    with pytest.raises(UserError, match="role"):
        Tool(function=go, role="transfer")  # type: ignore[arg-type]
    assert Tool(function=go, role=Delegate(worker="w")).role == Delegate(worker="w")
