"""`Tool.max_calls`: a tool runs at most N times in a run, counted from the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion import Agent, Approve, Reject, RunContext, RunStatus, Runtime, UserError, tool
from orchestrion.keys import tool_keys, tool_of
from orchestrion.messages import ToolCall
from orchestrion.patterns import Supervisor
from orchestrion.testing import ScriptedModel, call
from orchestrion.tools.tool import ModelRetry

from ._support import Crash, tool_results


class Bank:
    def __init__(self, crash_on_first: bool = False) -> None:
        self.payments: list[float] = []
        self.seen_keys: list[str] = []
        self.crash_on_first = crash_on_first

    def pay(self, key: str, amount: float) -> str:
        self.seen_keys.append(key)
        if self.crash_on_first:
            self.crash_on_first = False
            raise Crash("process died after the bank took the payment")
        self.payments.append(amount)
        return f"paid {amount:.2f}"


def pay_tool(bank: Bank, *, approval: bool = False, max_calls: int | None = 1) -> object:
    @tool(effect="write", approval=approval, max_calls=max_calls)
    async def pay(ctx: RunContext[None], amount: float) -> str:
        if amount <= 0:
            raise ModelRetry("The amount must be positive.")
        return bank.pay(ctx.idempotency_key, amount)

    return pay


def payer(script: list[object], *tools: object) -> tuple[Agent[str], ScriptedModel]:
    model = ScriptedModel(script)  # type: ignore[arg-type]
    return Agent(name="payer", model=model, tools=list(tools), loop_guard=None), model  # type: ignore[arg-type]


LIMIT_NOTE = "was not run: it may run only once per run (max_calls=1), and it already has"


async def test_a_read_tool_over_its_limit_is_not_run_and_the_model_is_told(
    runtime: Runtime,
) -> None:
    ran: list[str] = []

    @tool(max_calls=2)
    def search(q: str) -> str:
        ran.append(q)
        return f"found {q}"

    agent, model = payer([call("search", {"q": q}) for q in "abc"] + ["done"], search)
    result = await runtime.run(agent, "look")
    assert result.output == "done"
    assert ran == ["a", "b"]
    last = tool_results(model.requests[-1])[-1]
    assert last.is_error
    assert (
        "Tool 'search' was not run: it may run only 2 times per run (max_calls=2)" in last.content
    )


async def test_a_write_tool_over_its_limit_never_executes_nor_asks_for_approval(
    runtime: Runtime,
) -> None:
    bank = Bank()
    agent, model = payer(
        [call("pay", {"amount": 5000}), call("pay", {"amount": 22000}), "done"],
        pay_tool(bank, approval=True),
    )
    first = await runtime.run(agent, "pay off the loan")
    [approval] = first.interrupts
    done = await runtime.resume(first.run_id, {approval.id: Approve()})
    assert done.status is RunStatus.COMPLETED, "the second call was refused without asking anyone"
    assert bank.payments == [5000.0]
    refused = tool_results(model.requests[-1])[-1]
    assert refused.is_error and LIMIT_NOTE in refused.content


async def test_two_calls_at_once_cannot_both_take_the_last_place(runtime: Runtime) -> None:
    bank = Bank()
    agent, model = payer(
        [[call("pay", {"amount": 1}, id="a"), call("pay", {"amount": 2}, id="b")], "done"],
        pay_tool(bank, approval=True),
    )
    first = await runtime.run(agent, "pay")
    [approval] = first.interrupts  # only the first asks: the second was refused at once
    assert approval.payload["arguments"] == {"amount": 1}  # type: ignore[index]
    done = await runtime.resume(first.run_id, {approval.id: Approve()})
    assert done.output == "done"
    assert bank.payments == [1.0]
    paid, refused = tool_results(model.requests[-1])
    assert (paid.content, paid.is_error) == ("paid 1.00", False)
    assert refused.is_error and LIMIT_NOTE in refused.content


async def test_the_limit_holds_across_a_resume_from_the_journal(tmp_path: Path) -> None:
    """A fresh runtime on the same SQLite file counts the call made before."""
    bank = Bank()

    @tool(approval=True)
    def confirm(question: str) -> str:
        return "confirmed"

    pay = pay_tool(bank)
    script = [
        call("pay", {"amount": 4812.5}),
        call("confirm", {"question": "anything else?"}),
        call("pay", {"amount": 23000}),
        "done",
    ]
    agent, model = payer(script, pay, confirm)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Runtime(url) as first_process:
        waiting = await first_process.run(agent, "pay", run_id="r1")
    assert bank.payments == [4812.5] and waiting.status is RunStatus.INTERRUPTED
    [question] = waiting.interrupts
    async with Runtime(url) as second_process:
        done = await second_process.resume("r1", {question.id: Approve()}, runnable=agent)
    assert done.output == "done"
    assert bank.payments == [4812.5], "the limit was counted from the journal, not reset"
    refused = tool_results(model.requests[-1])[-1]
    assert refused.is_error and LIMIT_NOTE in refused.content


async def test_a_write_cut_off_mid_call_is_resumed_not_refused(tmp_path: Path) -> None:
    """The one allowed call crashed after the bank took it: the resume makes the
    same call again (same idempotency key), it does not count it as a second one."""
    bank = Bank(crash_on_first=True)
    agent, _ = payer([call("pay", {"amount": 10}), "done"], pay_tool(bank))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Runtime(url) as first_process:
        with pytest.raises(Crash):
            await first_process.run(agent, "pay", run_id="r1")
    async with Runtime(url) as second_process:
        done = await second_process.resume("r1", runnable=agent)
    assert done.output == "done"
    assert bank.payments == [10.0]
    assert len(bank.seen_keys) == 2 and bank.seen_keys[0] == bank.seen_keys[1]


async def test_refused_rejected_or_retried_calls_use_no_place(runtime: Runtime) -> None:
    bank = Bank()
    agent, _ = payer(
        [
            call("pay", {"amount": "lots"}),  # invalid arguments: never ran
            call("pay", {"amount": -5}),  # the tool asks for a retry: no effect
            call("pay", {"amount": 99999}),  # the human rejects it
            call("pay", {"amount": 10}),
            "done",
        ],
        pay_tool(bank, approval=True),
    )
    result = await runtime.run(agent, "pay")
    result = await runtime.resume(result.run_id, {result.interrupts[0].id: Approve()})  # -5
    result = await runtime.resume(result.run_id, {result.interrupts[0].id: Reject("too much")})
    result = await runtime.resume(result.run_id, {result.interrupts[0].id: Approve()})
    assert result.output == "done"
    assert bank.payments == [10.0]


async def test_the_limit_is_per_run_across_agents(runtime: Runtime) -> None:
    """Each delegation starts a fresh worker run; the limit still counts the whole run."""
    bank = Bank()
    pay = pay_tool(bank)
    worker = Agent(
        name="payments",
        model=ScriptedModel(
            [call("pay", {"amount": 5000}), "paid", call("pay", {"amount": 22000}), "paid?"]
        ),
        tools=[pay],  # type: ignore[list-item]
        description="Pays.",
    )
    manager = Agent(
        name="manager",
        model=ScriptedModel(
            [
                call("delegate_to_payments", {"task": "pay 5000"}),
                call("delegate_to_payments", {"task": "pay 22000"}),
                "done",
            ]
        ),
    )
    result = await runtime.run(Supervisor(name="team", manager=manager, workers=[worker]), "pay")
    assert result.output == "done"
    assert bank.payments == [5000.0]


def test_max_calls_is_checked_at_definition_time() -> None:
    def noop() -> None: ...

    for bad in (0, -1, True, 1.5):
        with pytest.raises(UserError, match=r"max_calls=.* must be a whole number >= 1"):
            tool(max_calls=bad)(noop)  # type: ignore[arg-type]


def test_tool_keys_are_parsed_where_they_are_built() -> None:
    [key] = tool_keys("team/turn-1/tool/delegate_to_x#d/x/turn-2", (ToolCall("c/1", "pay", "{}"),))
    assert key == "team/turn-1/tool/delegate_to_x#d/x/turn-2/tool/pay#c_1"
    assert tool_of(key) == "pay"
    assert tool_of(key + "/approval") is None
    assert tool_of("a/turn-1/model") is None
