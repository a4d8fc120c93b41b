"""Support triage: triage hands the customer to billing (a refund that needs
approval) or technical (known issues), one agent at a time (the Handoff pattern).

    python examples/support_triage.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/support_triage.py   # a real model
"""

import asyncio

from orchestrion import Runtime
from orchestrion.demos.runner import run_approving

# The definitions live in the package (orchestrion/demos/support_triage.py) so that
# `orchestrion demo support-triage` works from an installed wheel; this file runs them.
from orchestrion.demos.support_triage import TASK, Helpdesk, desk

MESSAGES = [TASK, "The app crashes when I export a report to PDF."]


async def main() -> None:
    helpdesk = Helpdesk()  # a stand-in billing system that honours idempotency keys
    async with Runtime("memory://") as runtime:
        for message in MESSAGES:
            print(f"customer: {message}")
            # a refund waits for a human: approved here
            result = await run_approving(runtime, desk, message, deps=helpdesk)
            agents = [s.key.split("/")[2] for s in await runtime.history(result.run_id)]
            print(
                "route:", " -> ".join(dict.fromkeys(agents))
            )  # keys: support-triage/hop-N/<agent>/...
            print(f"support: {result.output}\n")
        print(f"refunds made: {len(helpdesk.refunds)}")


if __name__ == "__main__":
    asyncio.run(main())
