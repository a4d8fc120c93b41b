"""Research loop: a lead delegates to an investigation team (search + code), an
analyst and a skeptic, and sends the investigation back when the skeptic objects
(hierarchical supervisors, with a loop guard and a bound on the lead's rounds).

    python examples/research_loop.py                                     # offline, stand-in model
    ORCHESTRION_MODEL=openai:gpt-4.1-mini python examples/research_loop.py   # a real model
"""

import asyncio
import re

from orchestrion import Event, LoopGuardTriggered, Runtime, StepCompleted, StepStarted

# The definitions live in the package (orchestrion/demos/research_loop.py) so that
# `orchestrion demo research-loop` works from an installed wheel; this file runs them.
from orchestrion.demos.research_loop import TASK, Finding, team

DELEGATION = re.compile(r"([\w-]+)/turn-\d+/tool/delegate_to_([\w-]+)#[^/]+$")


def show(event: Event) -> None:
    """Print delegations as they start, what analysis and skeptic said, and the loop guard."""
    match event:
        case StepStarted(key=key) if found := DELEGATION.search(key):
            depth = key.count("/tool/delegate_to_") - 1
            print(f"{'  ' * depth}{found.group(1)} -> {found.group(2)}")
        case StepCompleted(key=key, result={"content": str(said)}) if (
            found := DELEGATION.search(key)
        ) and found.group(2) in ("analysis", "skeptic"):
            print(f"    {found.group(2)}: {said.splitlines()[0]}")
        case LoopGuardTriggered(kind="tool", subject=tool, times=times, action=action):
            print(
                f"    loop guard ({action}): {tool} was called {times} times with the same arguments"
            )
        case LoopGuardTriggered(kind=kind, subject=subject, action=action):
            print(f"    loop guard ({action}): {kind} loop on {subject}")
        case _:
            pass


async def main() -> None:
    async with Runtime("memory://", sinks=[show]) as runtime:
        result = await runtime.run(team, TASK)
    finding = result.output
    assert isinstance(finding, Finding), result.error
    print(f"\n{TASK}\n{finding.answer}\nEvidence:")
    print("\n".join(f"- {line}" for line in finding.evidence))
    print("Objections resolved:")
    print("\n".join(f"- {line}" for line in finding.objections_resolved))


if __name__ == "__main__":
    asyncio.run(main())
