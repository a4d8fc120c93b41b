"""Loop prevention: repeated identical tool calls are warned about, stopped, or asked about."""

from __future__ import annotations

import pytest

from orchestrion import Agent, LoopGuard, LoopGuardTriggered, RunStatus, Runtime, UserError, tool
from orchestrion.messages import ToolResult
from orchestrion.testing import ScriptedModel, call

from ._support import tool_results


@tool
def get_balance(account: str) -> str:
    return "1,000"


def stubborn(guard: LoopGuard | None, times: int = 3) -> tuple[Agent[str], ScriptedModel]:
    model = ScriptedModel([call("get_balance", {"account": "savings"})] * times + ["giving up"])
    return Agent(name="a", model=model, tools=[get_balance], loop_guard=guard), model


async def test_warn_tells_the_agent_with_its_earlier_attempts() -> None:
    events: list[object] = []
    runtime = Runtime("memory://", sinks=[events.append])
    agent, model = stubborn(LoopGuard(repeats=3, policy="warn"))
    result = await runtime.run(agent, "balance?")
    assert result.output == "giving up"
    second, third = (model.requests[i].messages[-1] for i in (2, 3))
    assert isinstance(second, ToolResult) and "[loop guard]" not in second.content
    assert isinstance(third, ToolResult) and third.content.startswith("1,000\n\n[loop guard]")
    assert "called get_balance with these arguments 3 times" in third.content
    assert "- attempt 1: 1,000\n- attempt 2: 1,000" in third.content
    [loop] = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert (loop.kind, loop.subject, loop.times, loop.action) == ("tool", "get_balance", 3, "warn")
    assert loop.key == "a/turn-3"


async def test_warned_and_still_getting_the_same_result_stops_but_polling_does_not(
    runtime: Runtime,
) -> None:
    agent, model = stubborn(LoopGuard(), times=10)  # the defaults: warn from the 3rd
    result = await runtime.run(agent, "balance?")
    assert result.status is RunStatus.STOPPED
    assert len(model.requests) == 6, "stopped at twice `repeats`, not at max_turns"
    assert result.error is not None and result.error["type"] == "LoopDetected"
    assert "called get_balance with the same arguments 6 times" in result.error["message"]
    assert "got the same result 6 times, though warned since the 3rd" in result.error["message"]

    polled: list[int] = []

    @tool
    def job_status(job: str) -> str:
        polled.append(1)
        return f"{len(polled) * 10}% done"

    script = [call("job_status", {"job": "j1"})] * 8 + ["finished"]
    poller = Agent(name="p", model=ScriptedModel(script), tools=[job_status])
    assert (await runtime.run(poller, "wait for j1")).output == "finished"


async def test_stop_ends_the_run_with_loop_detected(runtime: Runtime) -> None:
    agent, _ = stubborn(LoopGuard(repeats=2, policy="stop"))
    result = await runtime.run(agent, "balance?")
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and result.error["type"] == "LoopDetected"
    assert "called get_balance with the same arguments 2 times" in result.error["message"]


@pytest.mark.parametrize(
    ("answer", "status"), [("continue", RunStatus.COMPLETED), ("stop", RunStatus.STOPPED)]
)
async def test_ask_lets_a_human_decide(runtime: Runtime, answer: str, status: RunStatus) -> None:
    agent, _ = stubborn(LoopGuard(repeats=2, policy="ask"), times=2)
    first = await runtime.run(agent, "balance?")
    assert first.status is RunStatus.INTERRUPTED
    [question] = first.interrupts
    assert question.payload["times"] == 2 and question.schema["enum"] == ["continue", "stop"]
    done = await runtime.resume(first.run_id, {question.id: answer})
    assert done.status is status


async def test_no_guard_no_note(runtime: Runtime) -> None:
    agent, model = stubborn(None, times=4)
    await runtime.run(agent, "balance?")
    last = model.requests[-1].messages[-1]
    assert isinstance(last, ToolResult) and last.content == "1,000"


async def test_different_arguments_are_not_a_loop(runtime: Runtime) -> None:
    model = ScriptedModel([call("get_balance", {"account": a}) for a in ("s", "c", "x")] + ["ok"])
    await runtime.run(
        Agent(
            name="a",
            model=model,
            tools=[get_balance],
            loop_guard=LoopGuard(repeats=2, policy="stop"),
        ),
        "?",
    )
    model.assert_complete()


def test_guards_are_checked_at_definition_time() -> None:
    with pytest.raises(UserError, match="repeats=1 must be at least 2"):
        LoopGuard(repeats=1)
    with pytest.raises(UserError, match="policy must be"):
        LoopGuard(policy="ignore")  # type: ignore[arg-type]


# -- a write tool called again and again, with new arguments each time -------------------


def payer(
    guard: LoopGuard | None, amounts: list[int]
) -> tuple[Agent[str], ScriptedModel, list[int]]:
    paid: list[int] = []

    @tool(effect="write")
    def pay_loan(amount: int) -> str:
        paid.append(amount)
        return f"paid {amount}"

    model = ScriptedModel([call("pay_loan", {"amount": a}) for a in amounts] + ["done"])
    agent = Agent(name="payments", model=model, tools=[pay_loan], loop_guard=guard)
    return agent, model, paid


async def test_a_write_tool_called_again_with_new_arguments_is_warned_about() -> None:
    events: list[object] = []
    runtime = Runtime("memory://", sinks=[events.append])
    agent, model, paid = payer(LoopGuard(), [5000, 22000, 23000])  # the defaults
    result = await runtime.run(agent, "pay the loan")
    assert result.output == "done"
    assert paid == [5000, 22000, 23000], "warn lets the call run, and tells the agent"
    second, third = (tool_results(model.requests[i])[-1] for i in (2, 3))
    assert "[loop guard]" not in second.content
    assert third.content.startswith(
        "paid 23000\n\n[loop guard] You have now called pay_loan in 3 turns"
    )
    assert '- {"amount":5000} -> paid 5000\n- {"amount":22000} -> paid 22000' in third.content
    [loop] = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert (loop.kind, loop.subject, loop.times, loop.action) == ("write", "pay_loan", 3, "warn")


async def test_a_warned_agent_that_writes_again_is_stopped_before_the_write(
    runtime: Runtime,
) -> None:
    amounts = [5000, 22000, 23000, 24000, 25000, 26000, 27000]
    agent, _, paid = payer(LoopGuard(), amounts)
    result = await runtime.run(agent, "pay the loan")
    assert result.status is RunStatus.STOPPED
    assert paid == amounts[:5], "warned at the 3rd, stopped before the 6th"
    assert result.error is not None and result.error["type"] == "LoopDetected"
    assert (
        "about to call write tool pay_loan in a 6th turn, though warned since its 3rd, with"
        in result.error["message"]
    )


async def test_stop_ends_the_run_before_the_write_runs_again(runtime: Runtime) -> None:
    agent, _, paid = payer(LoopGuard(write_repeats=2, policy="stop"), [5000, 22000])
    result = await runtime.run(agent, "pay the loan")
    assert result.status is RunStatus.STOPPED
    assert paid == [5000], "the second payment never ran"
    assert result.error is not None and result.error["type"] == "LoopDetected"
    assert (
        "about to call write tool pay_loan in a 2nd turn, with arguments" in result.error["message"]
    )
    assert 'earlier: {"amount":5000} -> paid 5000' in result.error["message"]


async def test_ask_asks_before_the_write_runs_again(runtime: Runtime) -> None:
    agent, _, paid = payer(LoopGuard(write_repeats=2, policy="ask"), [5000, 22000])
    first = await runtime.run(agent, "pay the loan")
    [question] = first.interrupts
    assert paid == [5000]
    assert (
        question.payload["loop"] == "write" and question.payload["arguments"] == '{"amount":22000}'
    )  # type: ignore[index]
    assert question.payload["earlier"] == ['{"amount":5000} -> paid 5000']  # type: ignore[index]
    stopped = await runtime.resume(first.run_id, {question.id: "stop"})
    assert stopped.status is RunStatus.STOPPED and paid == [5000]


async def test_writes_in_one_answer_are_one_turn_and_the_check_can_be_off(runtime: Runtime) -> None:
    paid: list[int] = []

    @tool(effect="write")
    def send(n: int) -> str:
        paid.append(n)
        return "sent"

    batch = [call("send", {"n": n}) for n in range(5)]
    guard = LoopGuard(write_repeats=2, policy="stop")
    agent = Agent(name="a", model=ScriptedModel([batch, "done"]), tools=[send], loop_guard=guard)
    assert (await runtime.run(agent, "send five")).output == "done"

    off = LoopGuard(write_repeats=None, policy="stop")
    script = [call("send", {"n": n}) for n in range(5)] + ["done"]
    agent = Agent(name="b", model=ScriptedModel(script), tools=[send], loop_guard=off)
    assert (await runtime.run(agent, "send five, one by one")).output == "done"
    assert len(paid) == 10


def test_write_repeats_is_checked_at_definition_time() -> None:
    with pytest.raises(UserError, match="write_repeats=1 must be at least 2"):
        LoopGuard(write_repeats=1)
