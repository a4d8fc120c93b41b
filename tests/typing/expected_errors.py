"""Mistakes a user's checker must catch. Each line carrying `# type: ignore[...]` is
an error for both mypy --strict and pyright (strict); both report an ignore that
is no longer needed, so an expected error that stops being one fails `make test`.
"""

from __future__ import annotations

import pydantic

from orchestrion import Agent, RunContext, Runtime, tool


class Invoice(pydantic.BaseModel):
    total: float


class Bank:
    pass


class Crm:
    pass


@tool
def get_balance(ctx: RunContext[Bank], account: str) -> float:
    return 0.0


@tool
def find_customer(ctx: RunContext[Crm], name: str) -> str:
    return name


clerk = Agent(name="clerk", model="test", tools=[get_balance], output_type=Invoice)

# A tool whose deps are not the agent's.
teller: Agent[Bank, str] = Agent(name="teller", model="test", tools=[find_customer])  # type: ignore[list-item]

# Tools that read different deps: no deps can satisfy both.
Agent(name="both", model="test", tools=[get_balance, find_customer])  # type: ignore[list-item]


@tool
def read_deps(ctx: RunContext[Bank]) -> None:
    ctx.deps.no_such_method()  # type: ignore[attr-defined]


async def main(runtime: Runtime) -> None:
    # The wrong deps, and no deps, for an agent whose tools read a Bank.
    await runtime.run(clerk, "Invoice ACME.", deps=Crm())  # type: ignore[arg-type]
    await runtime.run(clerk, "Invoice ACME.")  # type: ignore[arg-type]
    await runtime.resume("run-1", runnable=clerk, deps=Crm())  # type: ignore[arg-type]

    result = await runtime.run(clerk, "Invoice ACME.", deps=Bank())
    print(result.output.no_such_field)  # type: ignore[attr-defined]
    total: str = result.output.total  # type: ignore[assignment]
    print(total)

    # An agent's input is JSON data (or a pydantic model), not any object.
    await runtime.run(clerk, object(), deps=Bank())  # type: ignore[call-overload]
