"""Payroll help: welcome messages IT and finance at once; IT resets the portal
access and tells finance; finance explains the short pay and finishes (the
PeerNetwork pattern).

    python examples/payroll_help.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/payroll_help.py   # a real model
"""

import asyncio

# The definitions live in the package (orchestrion/demos/payroll_help.py) so that
# `orchestrion demo payroll-help` works from an installed wheel; this file runs them.
from orchestrion.demos.payroll_help import TASK, Payroll, network
from orchestrion.demos.runner import run_example


async def main() -> None:
    payroll = Payroll()  # a stand-in payroll portal and ledger
    await run_example(network, TASK, deps=payroll)
    print(f"portal access reset for: {', '.join(payroll.resets)}")


if __name__ == "__main__":
    asyncio.run(main())
