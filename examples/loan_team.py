"""Loan team: a manager delegates to loans and balances workers at once, then to a
payments worker whose payment needs approval (the Supervisor pattern).

    python examples/loan_team.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/loan_team.py   # a real model
"""

import asyncio

# The definitions live in the package (orchestrion/demos/loan_team.py) so that
# `orchestrion demo loan-team` works from an installed wheel; this file runs them.
from orchestrion.demos.loan_team import TASK, Bank, team
from orchestrion.demos.runner import run_example


async def main() -> None:
    bank = Bank()  # a stand-in bank that honours idempotency keys
    await run_example(team, TASK, deps=bank)  # the payment waits for a human: approved here
    print(f"payments made: {len(bank.payments)}; savings left: {bank.savings:,.2f}")


if __name__ == "__main__":
    asyncio.run(main())
