"""Loan team: a manager delegates to loans and balances workers at once, then to a
payments worker whose payment needs approval (the Supervisor pattern).

    python examples/loan_team.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/loan_team.py   # a real model
"""

import asyncio

from orchestrion import Approve, Runtime

# The definitions live in the package (orchestrion/demos/loan_team.py) so that
# `orchestrion demo loan-team` works from an installed wheel; this file runs them.
from orchestrion.demos.loan_team import TASK, Bank, team


async def main() -> None:
    bank = Bank()  # a stand-in bank that honours idempotency keys
    async with Runtime("memory://") as runtime:
        result = await runtime.run(team, TASK, deps=bank)
        while result.interrupts:  # the payment waits for a human: approve it here
            for interrupt in result.interrupts:
                print(f"auto-approving {interrupt.payload}")
            answers = {interrupt.id: Approve() for interrupt in result.interrupts}
            result = await runtime.resume(result.run_id, answers, deps=bank)
        for step in await runtime.history(result.run_id):
            print(f"  {step.status.value:9} {step.key}")
        print(result.output)
        print(f"payments made: {len(bank.payments)}; savings left: {bank.savings:,.2f}")


if __name__ == "__main__":
    asyncio.run(main())
