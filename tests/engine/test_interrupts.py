"""People in the loop: approvals, free answers, several pending interrupts, no re-execution."""

import asyncio
from collections import Counter
from typing import Any

import pydantic
import pytest

from orchestrion import (
    Agent,
    AnswerError,
    Approve,
    Interrupt,
    Reject,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    tool,
)
from orchestrion.errors import NoOutput, RunNotResumable
from orchestrion.testing import ScriptedModel, call

from ._support import journal_snapshot, last_tool_result, tool_results


class Bank:
    """Counts tool executions so tests can prove nothing ran twice."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.payments: list[tuple[float, str]] = []

    def agent(self, model: ScriptedModel, *, approval: Any = True) -> Agent[str]:
        bank = self

        @tool
        async def get_balance(account: str) -> float:
            """Balance of an account."""
            bank.calls["get_balance"] += 1
            return 5200.0

        @tool(effect="write", approval=approval)
        async def pay(amount: float, to: str = "loan") -> str:
            """Pay `amount` to `to`."""
            bank.calls["pay"] += 1
            bank.payments.append((amount, to))
            return f"paid {amount:.2f} to {to}"

        return Agent(name="bank", model=model, tools=[get_balance, pay])


async def test_approval_approve(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel(
        [call("get_balance", {"account": "savings"}), call("pay", {"amount": 4800}), "Paid."]
    )
    result = await runtime.run(bank.agent(model), "pay off the loan")
    assert result.status == RunStatus.INTERRUPTED
    with pytest.raises(NoOutput, match=r"waits for 1 answer\(s\) from a human"):
        result.output  # noqa: B018
    [interrupt] = result.interrupts
    assert isinstance(interrupt, Interrupt)
    assert interrupt.kind == "approval"
    assert interrupt.key == "bank/turn-2/tool/pay#call_2_0/approval"
    assert interrupt.id.startswith("i-")
    assert interrupt.payload == {
        "agent": "bank",
        "tool": "pay",
        "arguments": {"amount": 4800},
        "call_id": "call_2_0",
    }
    assert interrupt.schema["required"] == ["approved"]  # type: ignore[index]
    assert bank.payments == []

    done = await runtime.resume(result.run_id, {interrupt.id: Approve()})
    assert done.status == RunStatus.COMPLETED
    assert done.output == "Paid."
    assert done.run_id == result.run_id
    assert bank.payments == [(4800.0, "loan")]
    assert last_tool_result(model.requests[2]).content == "paid 4800.00 to loan"
    model.assert_complete()


async def test_approval_can_be_given_as_plain_json(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 1}), "Paid."])
    result = await runtime.run(bank.agent(model), "pay")
    done = await runtime.resume(result.run_id, {result.interrupts[0].id: {"approved": True}})
    assert done.output == "Paid."
    assert bank.payments == [(1.0, "loan")]


async def test_approval_can_be_answered_by_step_key(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 1}), "Paid."])
    result = await runtime.run(bank.agent(model), "pay")
    done = await runtime.resume(result.run_id, {result.interrupts[0].key: True})
    assert done.output == "Paid."


async def test_approval_reject_with_reason_is_told_to_the_model(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 4800}), "Understood, not paying."])
    result = await runtime.run(bank.agent(model), "pay")
    iid = result.interrupts[0].id
    done = await runtime.resume(result.run_id, {iid: Reject("keep an emergency fund")})
    assert done.output == "Understood, not paying."
    assert bank.calls["pay"] == 0
    rejected = last_tool_result(model.requests[1])
    assert rejected.is_error is True
    assert rejected.content == "The user rejected this call: keep an emergency fund"
    steps = {s.key: s for s in await runtime.history(result.run_id)}
    assert steps["bank/turn-1/tool/pay#call_1_0/approval"].result == {
        "approved": False,
        "reason": "keep an emergency fund",
    }


async def test_approval_reject_without_reason(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 1}), "ok"])
    result = await runtime.run(bank.agent(model), "pay")
    await runtime.resume(result.run_id, {result.interrupts[0].id: Reject()})
    assert last_tool_result(model.requests[1]).content.endswith("no reason given")
    assert bank.calls["pay"] == 0


async def test_approve_with_edited_arguments(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 4800}), "Paid less."])
    result = await runtime.run(bank.agent(model), "pay")
    iid = result.interrupts[0].id
    done = await runtime.resume(result.run_id, {iid: Approve({"amount": 4000, "to": "card"})})
    assert done.output == "Paid less."
    assert bank.payments == [(4000.0, "card")]
    assert last_tool_result(model.requests[1]).content == (
        '[The user edited the arguments to {"amount":4000,"to":"card"}] paid 4000.00 to card'
    )


async def test_approve_with_invalid_edited_arguments_is_an_answer_error(
    runtime: Runtime,
) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 4800}), "Paid."])
    result = await runtime.run(bank.agent(model), "pay")
    iid = result.interrupts[0].id
    record = await runtime.get(result.run_id)
    before = await journal_snapshot(runtime, result.run_id)
    with pytest.raises(AnswerError, match=r"Edited arguments .* are invalid: amount") as info:
        await runtime.resume(result.run_id, {iid: Approve({"amount": "all of it"})})
    assert "'pay'" in str(info.value) and iid in str(info.value)
    assert bank.calls["pay"] == 0
    after = await runtime.get(result.run_id)
    assert after.status == RunStatus.INTERRUPTED
    assert after.pending == record.pending
    assert await journal_snapshot(runtime, result.run_id) == before
    done = await runtime.resume(result.run_id, {iid: Approve({"amount": 10})})
    assert done.output == "Paid."
    assert bank.payments == [(10.0, "loan")]


async def test_approval_predicate_only_for_large_amounts(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel(
        [[call("pay", {"amount": 500}), call("pay", {"amount": 2000, "to": "car"})], "Both paid."]
    )
    agent = bank.agent(model, approval=lambda args: args["amount"] > 1000)
    result = await runtime.run(agent, "pay both")
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    assert interrupt.payload["arguments"] == {"amount": 2000, "to": "car"}  # type: ignore[index]
    assert bank.payments == [(500.0, "loan")]

    done = await runtime.resume(result.run_id, {interrupt.id: Approve()})
    assert done.output == "Both paid."
    assert bank.payments == [(500.0, "loan"), (2000.0, "car")]
    assert bank.calls["pay"] == 2  # the small payment was not re-executed
    assert [r.content for r in tool_results(model.requests[1])] == [
        "paid 500.00 to loan",
        "paid 2000.00 to car",
    ]


# -- free answers -----------------------------------------------------------------


@tool
async def ask_name(ctx: RunContext[None]) -> str:
    """Ask the user their name."""
    name = await ctx.interrupt({"question": "What is your name?"})
    return f"name is {name}"


class Meeting(pydantic.BaseModel):
    day: str
    attendees: list[str]


@tool
async def ask_meeting(ctx: RunContext[None]) -> str:
    """Ask when to meet."""
    meeting = await ctx.interrupt("When and with whom?", name="meeting", answer_type=Meeting)
    assert isinstance(meeting, Meeting)
    return f"{meeting.day} with {', '.join(meeting.attendees)}"


async def test_interrupt_in_a_tool_with_a_string_answer(runtime: Runtime) -> None:
    model = ScriptedModel([call("ask_name", id="c1"), "Hello Ada."])
    result = await runtime.run(Agent(name="greeter", model=model, tools=[ask_name]), "hi")
    assert result.status == RunStatus.INTERRUPTED
    [interrupt] = result.interrupts
    assert interrupt.kind == "input"
    assert interrupt.key == "greeter/turn-1/tool/ask_name#c1/interrupt-1"
    assert interrupt.payload == {"question": "What is your name?"}
    assert interrupt.schema == {"type": "string"}
    done = await runtime.resume(result.run_id, {interrupt.id: "Ada"})
    assert done.output == "Hello Ada."
    assert last_tool_result(model.requests[1]).content == "name is Ada"


async def test_interrupt_in_a_tool_with_a_pydantic_answer(runtime: Runtime) -> None:
    model = ScriptedModel([call("ask_meeting", id="c1"), "Booked."])
    result = await runtime.run(Agent(name="cal", model=model, tools=[ask_meeting]), "meet")
    [interrupt] = result.interrupts
    assert interrupt.key == "cal/turn-1/tool/ask_meeting#c1/meeting"
    assert interrupt.schema["required"] == ["day", "attendees"]  # type: ignore[index]
    done = await runtime.resume(
        result.run_id, {interrupt.id: {"day": "Monday", "attendees": ["Ada", "Bo"]}}
    )
    assert done.output == "Booked."
    assert last_tool_result(model.requests[1]).content == "Monday with Ada, Bo"
    steps = {s.key: s for s in await runtime.history(result.run_id)}
    assert steps[interrupt.key].result == {"day": "Monday", "attendees": ["Ada", "Bo"]}
    assert steps[interrupt.key].status == StepStatus.COMPLETED


async def test_pydantic_instance_is_accepted_as_an_answer(runtime: Runtime) -> None:
    model = ScriptedModel([call("ask_meeting"), "Booked."])
    result = await runtime.run(Agent(name="cal", model=model, tools=[ask_meeting]), "meet")
    answer = Meeting(day="Friday", attendees=["Cy"])
    done = await runtime.resume(result.run_id, {result.interrupts[0].id: answer})  # type: ignore[dict-item]
    assert done.output == "Booked."
    assert last_tool_result(model.requests[1]).content == "Friday with Cy"


# -- several pending interrupts -----------------------------------------------------


async def _three_pending(
    runtime: Runtime, bank: Bank
) -> tuple[ScriptedModel, str, list[Interrupt]]:
    model = ScriptedModel(
        [
            [
                call("get_balance", {"account": "savings"}),
                call("pay", {"amount": 1}),
                call("pay", {"amount": 2}),
                call("pay", {"amount": 3}),
            ],
            "All settled.",
        ]
    )
    result = await runtime.run(bank.agent(model), "pay three")
    assert result.status == RunStatus.INTERRUPTED
    assert len(result.interrupts) == 3
    assert bank.calls == Counter({"get_balance": 1})
    return model, result.run_id, list(result.interrupts)


async def test_several_pending_interrupts_answered_one_at_a_time(runtime: Runtime) -> None:
    bank = Bank()
    model, run_id, interrupts = await _three_pending(runtime, bank)
    first, second, third = interrupts
    assert [i.payload["arguments"] for i in interrupts] == [  # type: ignore[index]
        {"amount": 1},
        {"amount": 2},
        {"amount": 3},
    ]
    assert len({i.id for i in interrupts}) == 3

    partial = await runtime.resume(run_id, {second.id: Approve()})
    assert partial.status == RunStatus.INTERRUPTED
    assert [i.id for i in partial.interrupts] == [first.id, third.id]
    assert [p["id"] for p in (await runtime.get(run_id)).pending] == [first.id, third.id]
    assert bank.payments == [(2.0, "loan")]

    partial = await runtime.resume(run_id, {third.id: Reject("too small")})
    assert partial.status == RunStatus.INTERRUPTED
    assert [i.id for i in partial.interrupts] == [first.id]
    assert bank.payments == [(2.0, "loan")]

    done = await runtime.resume(run_id, {first.id: Approve()})
    assert done.status == RunStatus.COMPLETED
    assert done.output == "All settled."
    assert bank.payments == [(2.0, "loan"), (1.0, "loan")]
    assert bank.calls == Counter({"get_balance": 1, "pay": 2})
    assert len(model.requests) == 2
    results = tool_results(model.requests[1])
    assert [(r.content, r.is_error) for r in results] == [
        ("5200.0", False),
        ("paid 1.00 to loan", False),
        ("paid 2.00 to loan", False),
        ("The user rejected this call: too small", True),
    ]
    assert (await runtime.get(run_id)).pending == []


async def test_several_pending_interrupts_answered_at_once(runtime: Runtime) -> None:
    bank = Bank()
    model, run_id, interrupts = await _three_pending(runtime, bank)
    answers = {
        interrupts[0].id: Approve(),
        interrupts[1].id: Reject("no"),
        interrupts[2].id: Approve(),
    }
    done = await runtime.resume(run_id, answers)
    assert done.status == RunStatus.COMPLETED
    assert sorted(bank.payments) == [(1.0, "loan"), (3.0, "loan")]
    assert bank.calls == Counter({"get_balance": 1, "pay": 2})
    assert len(model.requests) == 2
    model.assert_complete()


async def test_resume_without_answers_keeps_waiting(runtime: Runtime) -> None:
    bank = Bank()
    model, run_id, interrupts = await _three_pending(runtime, bank)
    before = await journal_snapshot(runtime, run_id)
    again = await runtime.resume(run_id)
    assert again.status == RunStatus.INTERRUPTED
    assert again.interrupts == tuple(interrupts)
    assert await journal_snapshot(runtime, run_id) == before
    assert bank.calls == Counter({"get_balance": 1})
    assert len(model.requests) == 1


async def test_a_bad_answer_among_several_leaves_an_accurate_pending_list(
    runtime: Runtime,
) -> None:
    bank = Bank()
    _, run_id, interrupts = await _three_pending(runtime, bank)
    answers = {
        interrupts[0].id: Approve(),
        interrupts[1].id: Approve({"amount": "lots"}),
    }
    with pytest.raises(AnswerError):
        await runtime.resume(run_id, answers)
    record = await runtime.get(run_id)
    waiting = {s.key for s in await runtime.history(run_id) if s.status == StepStatus.PENDING}
    assert {p["key"] for p in record.pending} == waiting


# -- nothing runs twice, and the record says what waits -------------------------------


async def test_nothing_before_the_interrupt_runs_again(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel(
        [
            call("get_balance", {"account": "savings"}),
            call("get_balance", {"account": "checking"}),
            call("pay", {"amount": 4800}),
            "Paid.",
        ]
    )
    result = await runtime.run(bank.agent(model), "pay")
    assert result.status == RunStatus.INTERRUPTED
    assert len(model.requests) == 3
    assert bank.calls == Counter({"get_balance": 2})
    usage_before = result.usage

    done = await runtime.resume(result.run_id, {result.interrupts[0].id: Approve()})
    assert done.output == "Paid."
    assert len(model.requests) == 4  # only the turn after the approval was asked live
    assert bank.calls == Counter({"get_balance": 2, "pay": 1})
    assert done.usage.requests == 4  # replayed responses still count towards usage
    assert done.usage.input_tokens > usage_before.input_tokens
    # The live request after resume carries the whole rebuilt conversation.
    assert [r.content for r in tool_results(model.requests[3])] == [
        "5200.0",
        "5200.0",
        "paid 4800.00 to loan",
    ]


async def test_status_and_pending_are_stored_on_the_run(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 7}), "Paid."])
    result = await runtime.run(bank.agent(model), "pay")
    record = await runtime.get(result.run_id)
    assert record.status == RunStatus.INTERRUPTED
    assert record.pending == [result.interrupts[0].to_json()]
    assert Interrupt.from_json(record.pending[0]) == result.interrupts[0]  # type: ignore[arg-type]
    waiting = await runtime.list(status=RunStatus.INTERRUPTED)
    assert [r.id for r in waiting] == [result.run_id]
    steps = await runtime.history(result.run_id)
    assert [(s.kind, s.status) for s in steps] == [
        ("model", StepStatus.COMPLETED),
        ("approval", StepStatus.PENDING),
    ]
    assert steps[1].result == result.interrupts[0].payload

    await runtime.resume(result.run_id, {result.interrupts[0].id: Approve()})
    record = await runtime.get(result.run_id)
    assert record.status == RunStatus.COMPLETED
    assert record.pending == []
    assert record.output == "Paid."
    assert await runtime.list(status=RunStatus.INTERRUPTED) == []


async def test_a_fresh_runtime_resumes_an_interrupted_run(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel(
        [call("get_balance", {"account": "savings"}), call("pay", {"amount": 9}), "Paid."]
    )
    agent = bank.agent(model)
    result = await runtime.run(agent, "pay")
    other = Runtime(runtime.store)
    with pytest.raises(RunNotResumable, match="pass runnable="):
        await other.resume(result.run_id, {result.interrupts[0].id: Approve()})
    done = await other.resume(result.run_id, {result.interrupts[0].id: Approve()}, runnable=agent)
    assert done.output == "Paid."
    assert bank.calls == Counter({"get_balance": 1, "pay": 1})


async def test_cancelling_an_interrupted_run(runtime: Runtime) -> None:
    bank = Bank()
    model = ScriptedModel([call("pay", {"amount": 7}), "Paid."])
    result = await runtime.run(bank.agent(model), "pay")
    await runtime.cancel(result.run_id)
    record = await runtime.get(result.run_id)
    assert record.status == RunStatus.CANCELLED
    assert record.pending == []
    with pytest.raises(RunNotResumable, match="is cancelled"):
        await runtime.resume(result.run_id, {result.interrupts[0].id: Approve()})
    assert bank.calls["pay"] == 0


async def test_open_questions_stay_answerable_after_a_crash_during_resume(runtime: Runtime) -> None:
    hang, paying = asyncio.Event(), asyncio.Event()

    @tool(effect="write", approval=True)
    async def pay(n: int) -> str:
        """Pay."""
        if n == 1 and not hang.is_set():
            paying.set()
            await asyncio.Event().wait()
        return f"paid {n}"

    model = ScriptedModel(
        [[call("pay", {"n": 1}, id="c1"), call("pay", {"n": 2}, id="c2")], "done"]
    )
    waiting = await runtime.run(Agent(name="p", model=model, tools=[pay]), "go")
    first, second = (i.id for i in waiting.interrupts)
    task = asyncio.create_task(runtime.resume(waiting.run_id, {first: Approve()}))
    await paying.wait()
    task.cancel()  # the resume dies while paying n=1
    await asyncio.gather(task, return_exceptions=True)
    hang.set()

    record = await runtime.get(waiting.run_id)
    assert record.status is RunStatus.RUNNING
    assert second in [p["id"] for p in record.pending]
    done = await runtime.resume(waiting.run_id, {second: Approve()})
    assert done.status is RunStatus.COMPLETED
