"""History of a run's steps, and forks that continue live from an (edited) step."""

from collections import Counter

import pytest

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    ModelResponse,
    Reject,
    RunContext,
    RunStatus,
    Runtime,
    StepInfo,
    StepStatus,
    ToolCall,
    UserError,
    tool,
)
from orchestrion.testing import ScriptedModel, call

from ._support import last_tool_result, tool_results

MODEL_1 = "bank/turn-1/model"
TOOL_1 = "bank/turn-1/tool/get_balance#c1"
MODEL_2 = "bank/turn-2/model"


class Bank:
    def __init__(self, *script: object) -> None:
        self.calls: Counter[str] = Counter()
        self.model = ScriptedModel(list(script))  # type: ignore[arg-type]
        bank = self

        @tool
        async def get_balance(account: str) -> float:
            """Balance of an account."""
            bank.calls[account] += 1
            return {"savings": 100.0, "checking": 20.0}[account]

        self.agent = Agent(name="bank", model=self.model, tools=[get_balance])


async def _original(runtime: Runtime, *more_script: object) -> tuple[Bank, str]:
    bank = Bank(
        call("get_balance", {"account": "savings"}, id="c1"), "Savings hold 100.", *more_script
    )
    result = await runtime.run(bank.agent, "How much in savings?", run_id="orig")
    assert result.output == "Savings hold 100."
    return bank, result.run_id


async def test_history_lists_steps_in_order_with_their_details(runtime: Runtime) -> None:
    _, run_id = await _original(runtime)
    steps = await runtime.history(run_id)
    assert all(isinstance(s, StepInfo) for s in steps)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        (MODEL_1, "model", StepStatus.COMPLETED),
        (TOOL_1, "tool", StepStatus.COMPLETED),
        (MODEL_2, "model", StepStatus.COMPLETED),
    ]
    assert [s.seq for s in steps] == sorted(s.seq for s in steps)
    assert len({s.seq for s in steps}) == 3
    for s in steps:
        assert 0 < s.started_at <= s.ended_at
    assert steps[0].result["tool_calls"] == [["c1", "get_balance", '{"account":"savings"}']]  # type: ignore[index]
    assert steps[1].result == {"content": "100.0", "is_error": False}
    assert steps[2].result["text"] == "Savings hold 100."  # type: ignore[index]
    assert ModelResponse.from_json(steps[2].result).text == "Savings hold 100."  # type: ignore[arg-type]


async def test_history_shows_a_write_step_once_at_its_latest_state(runtime: Runtime) -> None:
    @tool(effect="write")
    async def pay(amount: float) -> str:
        return "paid"

    model = ScriptedModel([call("pay", {"amount": 1}, id="p"), "ok"])
    result = await runtime.run(Agent(name="w", model=model, tools=[pay]), "go")
    steps = await runtime.history(result.run_id)
    assert [s.key for s in steps] == ["w/turn-1/model", "w/turn-1/tool/pay#p", "w/turn-2/model"]
    assert steps[1].status == StepStatus.COMPLETED
    entries = [e for e in await runtime.store.load(result.run_id) if e.key == steps[1].key]
    assert [e.status for e in entries] == [StepStatus.STARTED, StepStatus.COMPLETED]
    assert steps[1].seq == entries[0].seq
    assert steps[1].started_at == entries[0].started_at


async def test_fork_at_a_model_step_with_an_edited_response(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime, "Checking holds 20.")
    original_history = await runtime.history(run_id)
    original_record = await runtime.get(run_id)
    edited = ModelResponse(tool_calls=(ToolCall("c9", "get_balance", '{"account": "checking"}'),))

    fork = await runtime.fork(run_id, at=MODEL_1, edit=edited)
    assert fork.status == RunStatus.COMPLETED
    assert fork.output == "Checking holds 20."
    assert fork.run_id != run_id
    # The edited step replaced the model request; only the steps after it ran live.
    assert len(bank.model.requests) == 3
    assert bank.calls == Counter({"savings": 1, "checking": 1})
    assert last_tool_result(bank.model.requests[2]).content == "20.0"
    bank.model.assert_complete()

    record = await runtime.get(fork.run_id)
    assert (record.parent_id, record.fork_at) == (run_id, MODEL_1)
    assert record.input == original_record.input
    assert record.status == RunStatus.COMPLETED
    steps = await runtime.history(fork.run_id)
    assert [s.key for s in steps] == [
        MODEL_1,
        "bank/turn-1/tool/get_balance#c9",
        MODEL_2,
    ]
    assert steps[0].result["tool_calls"] == [["c9", "get_balance", '{"account": "checking"}']]  # type: ignore[index]

    assert await runtime.history(run_id) == original_history
    assert await runtime.get(run_id) == original_record


async def test_fork_at_the_last_model_step_with_text(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime)
    fork = await runtime.fork(run_id, at=MODEL_2, edit="Savings: one hundred.", new_run_id="f2")
    assert fork.run_id == "f2"
    assert fork.output == "Savings: one hundred."
    assert len(bank.model.requests) == 2  # nothing was asked live
    assert bank.calls == Counter({"savings": 1})  # the tool step before was copied, not re-run
    steps = await runtime.history("f2")
    assert [s.key for s in steps] == [MODEL_1, TOOL_1, MODEL_2]
    assert steps[1].result == {"content": "100.0", "is_error": False}


async def test_fork_at_a_tool_step_with_an_edited_result(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime, "Savings hold a million.")
    fork = await runtime.fork(run_id, at=TOOL_1, edit="1000000.0")
    assert fork.output == "Savings hold a million."
    assert bank.calls == Counter({"savings": 1})  # the edited tool did not run
    assert len(bank.model.requests) == 3  # turn 1 replayed, turn 2 asked live
    result = last_tool_result(bank.model.requests[2])
    assert (result.content, result.is_error) == ("1000000.0", False)
    steps = await runtime.history(fork.run_id)
    assert steps[1].result == {"content": "1000000.0", "is_error": False}
    assert (await runtime.history(run_id))[1].result == {"content": "100.0", "is_error": False}


async def test_fork_at_a_tool_step_with_an_edited_error(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime, "The bank is down.")
    fork = await runtime.fork(run_id, at=TOOL_1, edit={"content": "bank offline", "is_error": True})
    assert fork.output == "The bank is down."
    result = last_tool_result(bank.model.requests[2])
    assert (result.content, result.is_error) == ("bank offline", True)


async def test_fork_without_edit_re_executes_that_step_live(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime, "Still 100.")
    fork = await runtime.fork(run_id, at=TOOL_1)
    assert fork.output == "Still 100."
    assert bank.calls == Counter({"savings": 2})
    assert len(bank.model.requests) == 3
    assert [r.content for r in tool_results(bank.model.requests[2])] == ["100.0"]
    steps = await runtime.history(fork.run_id)
    assert [s.key for s in steps] == [MODEL_1, TOOL_1, MODEL_2]


async def test_fork_at_an_unknown_key_lists_the_keys(runtime: Runtime) -> None:
    bank, run_id = await _original(runtime)
    runs_before = await runtime.list()
    with pytest.raises(UserError, match="has no step 'bank/turn-9/model'") as info:
        await runtime.fork(run_id, at="bank/turn-9/model")
    for key in (MODEL_1, TOOL_1, MODEL_2):
        assert key in str(info.value)
    assert await runtime.list() == runs_before
    assert len(bank.model.requests) == 2


async def test_fork_rejects_a_malformed_tool_edit(runtime: Runtime) -> None:
    _, run_id = await _original(runtime)
    runs_before = await runtime.list()
    with pytest.raises(UserError, match="Edit for tool step"):
        await runtime.fork(run_id, at=TOOL_1, edit=42)
    assert await runtime.list() == runs_before


async def test_fork_of_a_fork_and_of_a_failed_run(runtime: Runtime) -> None:
    @tool
    async def explode() -> str:
        raise RuntimeError("boom")

    model = ScriptedModel([call("explode", id="x"), "recovered"])
    agent = Agent(name="f", model=model, tools=[explode])
    failed = await runtime.run(agent, "go")
    assert failed.status == RunStatus.FAILED
    fixed = await runtime.fork(failed.run_id, at="f/turn-1/tool/explode#x", edit="defused")
    assert fixed.output == "recovered"
    assert (await runtime.get(failed.run_id)).status == RunStatus.FAILED
    again = await runtime.fork(fixed.run_id, at="f/turn-2/model", edit="second fork")
    assert again.output == "second fork"
    assert (await runtime.get(again.run_id)).parent_id == fixed.run_id


# -- forking at a human's answer ------------------------------------------------------


@tool(effect="write", approval=True)
async def pay(amount: float) -> str:
    """Pay."""
    return f"paid {amount}"


async def _approved_payment(runtime: Runtime, *more: object) -> tuple[ScriptedModel, str, str]:
    model = ScriptedModel([call("pay", {"amount": 5}, id="p"), "Paid.", *more])  # type: ignore[list-item]
    result = await runtime.run(Agent(name="payer", model=model, tools=[pay]), "pay")
    [interrupt] = result.interrupts
    done = await runtime.resume(result.run_id, {interrupt.id: Approve()})
    assert done.output == "Paid."
    return model, result.run_id, interrupt.key


async def test_fork_at_an_approval_with_another_answer(runtime: Runtime) -> None:
    model, run_id, key = await _approved_payment(runtime, "Not paid, as you wish.")
    fork = await runtime.fork(run_id, at=key, edit=Reject("changed my mind"))
    assert fork.output == "Not paid, as you wish."
    assert (
        last_tool_result(model.requests[2]).content
        == "The user rejected this call: changed my mind"
    )


async def test_fork_rejects_a_malformed_approval_edit(runtime: Runtime) -> None:
    _, run_id, key = await _approved_payment(runtime)
    runs_before = await runtime.list()
    with pytest.raises(AnswerError):
        await runtime.fork(run_id, at=key, edit={"approve": "yes"})
    assert await runtime.list() == runs_before


async def test_fork_checks_an_edited_answer_where_the_run_asks_for_it(runtime: Runtime) -> None:
    class Flow:
        name = "flow"

        async def invoke(self, ctx: RunContext[None], input: object) -> int:
            count: int = await ctx.interrupt("How many?", name="count", answer_type=int)
            return count * 2

    flow = Flow()
    waiting = await runtime.run(flow, None, run_id="orig")
    done = await runtime.resume("orig", {waiting.interrupts[0].id: 3})
    assert done.output == 6

    with pytest.raises(AnswerError, match=r"'seven'.*valid integer"):
        await runtime.fork("orig", at="flow/count", edit="seven", new_run_id="bad")
    assert (await runtime.get("bad")).status is RunStatus.FAILED
    assert (await runtime.get("orig")).output == 6

    forked = await runtime.fork("orig", at="flow/count", edit=5, new_run_id="good")
    assert forked.output == 10
