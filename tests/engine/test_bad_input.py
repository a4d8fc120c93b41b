"""Bad input from the model, from callers and from humans: clear errors, an intact journal."""

from dataclasses import dataclass

import pydantic
import pytest

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    ModelResponse,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    StoreError,
    ToolCall,
    UserError,
    tool,
)
from orchestrion.errors import RunNotFound, RunNotResumable
from orchestrion.testing import ScriptedModel, call

from ._support import journal_snapshot, last_tool_result


@tool
async def get_balance(account: str) -> float:
    """Current balance of an account."""
    return 100.0


@tool
async def get_rate(currency: str) -> float:
    """Exchange rate of a currency."""
    return 1.1


# -- bad input from the model ---------------------------------------------------


async def test_unknown_tool_is_answered_with_the_agents_tools(runtime: Runtime) -> None:
    model = ScriptedModel([call("delete_everything", {"really": True}), "Sorry, cannot."])
    agent = Agent(name="bank", model=model, tools=[get_rate, get_balance])
    result = await runtime.run(agent, "go")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "Sorry, cannot."
    error = last_tool_result(model.requests[1])
    assert error.is_error is True
    assert error.name == "delete_everything"
    assert error.content == (
        "Unknown tool 'delete_everything'. This agent can call only: get_balance, get_rate."
    )
    step = (await runtime.history(result.run_id))[1]
    assert step.key == "bank/turn-1/tool/delete_everything#call_1_0"
    assert (step.kind, step.status) == ("tool", StepStatus.COMPLETED)
    assert step.result == {"content": error.content, "is_error": True}


async def test_agent_without_tools_says_so(runtime: Runtime) -> None:
    model = ScriptedModel([call("anything"), "ok"])
    await runtime.run(Agent(name="a", model=model), "go")
    assert last_tool_result(model.requests[1]).content.endswith("can call only: none.")


async def test_arguments_that_are_not_json(runtime: Runtime) -> None:
    model = ScriptedModel([call("get_balance", '{"account": "sav'), "ok"])
    result = await runtime.run(Agent(name="a", model=model, tools=[get_balance]), "go")
    assert result.status == RunStatus.COMPLETED
    error = last_tool_result(model.requests[1])
    assert error.is_error is True
    assert "not valid JSON" in error.content
    assert '{"account": "sav' in error.content


async def test_arguments_failing_validation_name_the_field(runtime: Runtime) -> None:
    model = ScriptedModel([call("get_balance", {"acount": "savings"}), "ok"])
    result = await runtime.run(Agent(name="a", model=model, tools=[get_balance]), "go")
    assert result.status == RunStatus.COMPLETED
    error = last_tool_result(model.requests[1])
    assert error.is_error is True
    assert error.content.startswith("Invalid arguments for 'get_balance'")
    assert "account: Field required" in error.content
    assert "acount: Extra inputs are not permitted" in error.content


async def test_an_agent_cannot_call_another_agents_tool(runtime: Runtime) -> None:
    executed: list[str] = []

    @tool
    async def launch() -> str:
        executed.append("launch")
        return "launched"

    Agent(name="ops", model=ScriptedModel([]), tools=[launch])
    model = ScriptedModel([call("launch"), "ok"])
    viewer = Agent(name="viewer", model=model, tools=[get_balance])
    result = await runtime.run(viewer, "go")
    assert result.status == RunStatus.COMPLETED
    assert executed == []
    error = last_tool_result(model.requests[1])
    assert error.is_error is True
    assert "Unknown tool 'launch'" in error.content
    assert "only: get_balance." in error.content


async def test_duplicate_tool_call_ids_from_the_model_do_not_crash_the_run(
    runtime: Runtime,
) -> None:
    model = ScriptedModel(
        [
            ModelResponse(
                tool_calls=(
                    ToolCall("", "get_rate", '{"currency": "EUR"}'),
                    ToolCall("", "get_rate", '{"currency": "USD"}'),
                )
            ),
            "ok",
        ]
    )
    try:
        result = await runtime.run(Agent(name="a", model=model, tools=[get_rate]), "go")
    except Exception as exc:
        raise AssertionError(f"run raised {type(exc).__name__}: {exc}") from exc
    assert result.status == RunStatus.COMPLETED


# -- bad input from callers ---------------------------------------------------------


async def test_unknown_run_id_is_run_not_found(runtime: Runtime) -> None:
    for call_ in (
        runtime.get("nope-123"),
        runtime.history("nope-123"),
        runtime.resume("nope-123"),
        runtime.fork("nope-123", at="a/turn-1/model"),
    ):
        with pytest.raises(RunNotFound, match="nope-123") as info:
            await call_
        assert isinstance(info.value, UserError)
        assert info.value.run_id == "nope-123"


async def test_resuming_a_completed_run_is_not_resumable(runtime: Runtime) -> None:
    model = ScriptedModel(["done"])
    result = await runtime.run(Agent(name="a", model=model), "go")
    with pytest.raises(RunNotResumable, match=f"Run {result.run_id} is completed") as info:
        await runtime.resume(result.run_id)
    assert "fork" in str(info.value)
    assert len(model.requests) == 1
    assert (await runtime.get(result.run_id)).status == RunStatus.COMPLETED


async def test_run_input_that_is_not_json_is_a_user_error(runtime: Runtime) -> None:
    model = ScriptedModel(["never"])
    with pytest.raises(UserError, match="Run input must be JSON data"):
        await runtime.run(Agent(name="a", model=model), {"when": object()})
    assert model.requests == []
    assert await runtime.list() == []


async def test_duplicate_run_id_is_refused(runtime: Runtime) -> None:
    model = ScriptedModel(["one", "two"])
    agent = Agent(name="a", model=model)
    await runtime.run(agent, "go", run_id="same")
    with pytest.raises(StoreError, match="already exists"):
        await runtime.run(agent, "go", run_id="same")
    assert len(model.requests) == 1
    assert (await runtime.get("same")).output == "one"


# -- bad answers from humans --------------------------------------------------------


@tool(effect="write", approval=True)
async def pay(amount: float) -> str:
    """Pay an amount."""
    return f"paid {amount}"


async def _interrupted_payment(runtime: Runtime) -> tuple[ScriptedModel, str, str]:
    model = ScriptedModel([call("pay", {"amount": 50}), "Paid."])
    result = await runtime.run(Agent(name="payer", model=model, tools=[pay]), "pay 50")
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    return model, result.run_id, interrupt.id


async def test_answer_for_an_id_that_is_not_pending_lists_the_pending_ids(
    runtime: Runtime,
) -> None:
    model, run_id, iid = await _interrupted_payment(runtime)
    before = await journal_snapshot(runtime, run_id)
    with pytest.raises(AnswerError, match="no pending interrupt 'i-wrong'") as info:
        await runtime.resume(run_id, {"i-wrong": Approve()})
    assert iid in str(info.value)
    assert await journal_snapshot(runtime, run_id) == before
    assert (await runtime.get(run_id)).status == RunStatus.INTERRUPTED
    assert len(model.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"approve": "yes"},
        {"approved": "yes"},
        "yes",
        {"approved": False, "reason": 3},
        {"approved": True, "arguments": "amount=5"},
    ],
)
async def test_wrong_approval_shape_leaves_the_run_untouched(
    runtime: Runtime, answer: object
) -> None:
    model, run_id, iid = await _interrupted_payment(runtime)
    record = await runtime.get(run_id)
    before = await journal_snapshot(runtime, run_id)
    with pytest.raises(AnswerError, match=f"to approval {iid} is invalid") as info:
        await runtime.resume(run_id, {iid: answer})  # type: ignore[dict-item]
    assert '{"approved": true}' in str(info.value)
    after = await runtime.get(run_id)
    assert after.status == RunStatus.INTERRUPTED
    assert after.pending == record.pending
    assert await journal_snapshot(runtime, run_id) == before
    assert len(model.requests) == 1
    done = await runtime.resume(run_id, {iid: {"approved": True}})
    assert done.output == "Paid."


class Shipping(pydantic.BaseModel):
    street: str
    postcode: int


@tool
async def ask_address(ctx: RunContext[None]) -> str:
    """Ask the user for a shipping address."""
    address = await ctx.interrupt({"question": "Where to?"}, answer_type=Shipping)
    return f"{address.street} {address.postcode}"


WRONG_SHIPPING = [{"street": "Main"}, {"street": "Main", "postcode": "abc"}, "Main 1", None]


@dataclass(frozen=True)
class AskShipping:
    """A workflow-like runnable that asks a human for a typed answer."""

    name: str = "ask-shipping"

    async def invoke(self, ctx: RunContext[None], input: object) -> dict[str, object]:
        address = await ctx.interrupt({"question": "Where to?"}, answer_type=Shipping)
        return {"street": address.street, "postcode": address.postcode}


@pytest.mark.parametrize("answer", WRONG_SHIPPING)
async def test_wrong_typed_answer_in_a_workflow_leaves_the_run_untouched(
    runtime: Runtime, answer: object
) -> None:
    result = await runtime.run(AskShipping(), None)
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    assert interrupt.kind == "input"
    assert interrupt.payload == {"question": "Where to?"}
    record = await runtime.get(result.run_id)
    before = await journal_snapshot(runtime, result.run_id)

    with pytest.raises(AnswerError, match=f"to interrupt {interrupt.id}") as info:
        await runtime.resume(result.run_id, {interrupt.id: answer})  # type: ignore[dict-item]
    assert "Expected JSON matching" in str(info.value)

    after = await runtime.get(result.run_id)
    assert after.status == RunStatus.INTERRUPTED
    assert after.pending == record.pending
    assert await journal_snapshot(runtime, result.run_id) == before

    done = await runtime.resume(result.run_id, {interrupt.id: {"street": "Main", "postcode": 1}})
    assert done.status == RunStatus.COMPLETED
    assert done.output == {"street": "Main", "postcode": 1}


@pytest.mark.parametrize("answer", WRONG_SHIPPING)
async def test_wrong_typed_answer_in_a_tool_leaves_the_run_untouched(
    runtime: Runtime, answer: object
) -> None:
    model = ScriptedModel([call("ask_address"), "Shipping there."])
    result = await runtime.run(Agent(name="shop", model=model, tools=[ask_address]), "ship")
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    record = await runtime.get(result.run_id)
    before = await journal_snapshot(runtime, result.run_id)

    with pytest.raises(AnswerError, match=f"to interrupt {interrupt.id}"):
        await runtime.resume(result.run_id, {interrupt.id: answer})  # type: ignore[dict-item]

    after = await runtime.get(result.run_id)
    assert after.status == RunStatus.INTERRUPTED
    assert after.pending == record.pending
    assert await journal_snapshot(runtime, result.run_id) == before
    assert len(model.requests) == 1

    done = await runtime.resume(result.run_id, {interrupt.id: {"street": "Main", "postcode": 1}})
    assert done.output == "Shipping there."
    assert last_tool_result(model.requests[1]).content == "Main 1"


async def test_wrong_typed_answer_in_a_write_tool_does_not_grow_the_journal(
    runtime: Runtime,
) -> None:
    @tool(effect="write")
    async def ship(ctx: RunContext[None]) -> str:
        address = await ctx.interrupt("Where to?", answer_type=Shipping)
        return f"shipped to {address.street}"

    model = ScriptedModel([call("ship"), "Shipped."])
    result = await runtime.run(Agent(name="shop", model=model, tools=[ship]), "ship")
    [interrupt] = result.interrupts
    entries = await runtime.store.load(result.run_id)
    with pytest.raises(AnswerError, match="postcode"):
        await runtime.resume(result.run_id, {interrupt.id: {"street": "Main"}})
    assert await runtime.store.load(result.run_id) == entries
    assert (await runtime.get(result.run_id)).status == RunStatus.INTERRUPTED
    done = await runtime.resume(result.run_id, {interrupt.id: {"street": "Main", "postcode": 1}})
    assert done.output == "Shipped."
    # The write step was started once, before the interrupt, and completed once.
    statuses = [
        e.status for e in await runtime.store.load(result.run_id) if e.key.endswith("#call_1_0")
    ]
    assert statuses == [StepStatus.STARTED, StepStatus.COMPLETED]
