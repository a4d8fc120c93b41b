"""A user's file: an invoice clerk whose tool reads a `RunContext[Bank]`.

Checked, not run, by `mypy --strict` and `pyright` (strict) in `make test`: every
`assert_type` below is what a user's checker must infer without an annotation.
"""

from __future__ import annotations

from typing import Any, assert_type

import pydantic

from orchestrion import Agent, RunContext, RunResult, Runtime, Tool, tool


class Invoice(pydantic.BaseModel):
    customer: str
    total: float


class Bank:
    def balance(self, account: str) -> float:
        return 5200.0


@tool
def get_balance(ctx: RunContext[Bank], account: str) -> float:
    """The balance of `account`."""
    assert_type(ctx.deps, Bank)
    return ctx.deps.balance(account)


@tool(effect="write", approval=True)
async def pay(ctx: RunContext[Bank], amount: float) -> str:
    """Pay `amount`."""
    return f"paid {amount} with key {ctx.idempotency_key}"


@tool
def today() -> str:
    """Today's date."""
    return "2025-01-01"


def reminders() -> str:
    return "none"


def instructions(ctx: RunContext[Bank]) -> str:
    return f"Savings: {ctx.deps.balance('savings')}"


assert_type(get_balance, Tool[Bank])
assert_type(pay, Tool[Bank])
assert_type(today, Tool[Any])  # needs no deps: fits any agent

clerk = Agent(name="clerk", model="test", tools=[get_balance, pay], output_type=Invoice)
assert_type(clerk, Agent[Bank, Invoice])

writer = Agent(name="writer", model="test")
assert_type(writer, Agent[object, str])

briefed = Agent(name="briefed", model="test", instructions=instructions)
assert_type(briefed, Agent[Bank, str])

# Tools mixing a Tool[Bank] with tools that read no deps give Any deps (unchecked):
# annotate the agent to have them checked.
mixed = Agent(name="mixed", model="test", tools=[get_balance, today], output_type=int)
assert_type(mixed, Agent[Any, int])
checked: Agent[Bank, str] = Agent(name="checked", model="test", tools=[get_balance, today])
plain = Agent(name="plain", model="test", tools=[today])
assert_type(plain, Agent[Any, str])
raw = Agent(name="raw", model="test", tools=[reminders])  # plain functions: deps unchecked
assert_type(raw, Agent[object, str])


# The README's bank: a context-free tool and a tool of RunContext[None], in a list.
@tool(effect="write", approval=True)
async def pay_loan(ctx: RunContext[None], amount: float) -> str:
    return f"paid {amount:.2f} (key {ctx.idempotency_key[:8]})"


bank = Agent(name="bank", model="test", tools=[today, pay_loan])

# A union is no class to a checker: the output is Any.
either = Agent(name="either", model="test", output_type=int | str)
assert_type(either, Agent[object, Any])


async def main(runtime: Runtime) -> None:
    result = await runtime.run(clerk, "Invoice ACME for the loan.", deps=Bank())
    assert_type(result, RunResult[Invoice])
    assert_type(result.output, Invoice)
    assert_type(result.output.total, float)

    assert_type((await runtime.run(bank, "Pay off my car loan.")).output, str)
    text = await runtime.run(writer, "Write a haiku.")
    assert_type(text.output, str)
    await runtime.run(writer, "Any deps will do.", deps=Bank())

    resumed = await runtime.resume(result.run_id, {"i-1": True}, runnable=clerk, deps=Bank())
    assert_type(resumed, RunResult[Invoice])
    forked = await runtime.fork(result.run_id, at="clerk/turn-1/model", runnable=clerk, deps=Bank())
    assert_type(forked, RunResult[Invoice])

    # Without the runnable, it is found from the run's record: no checker sees it.
    assert_type(await runtime.resume(result.run_id), RunResult[Any])
    assert_type(await runtime.fork(result.run_id, at="clerk/turn-1/model"), RunResult[Any])

    assert_type(runtime.run_sync(clerk, "Again.", deps=Bank()), RunResult[Invoice])
    async for event in runtime.stream(clerk, "Stream it.", deps=Bank()):
        print(event)
