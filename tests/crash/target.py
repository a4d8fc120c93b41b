"""A run for crash tests: three payments in a row through a write tool.

Environment (set by the test):
  CRASH_EFFECTS      JSONL file where the tool logs what it does
  CRASH_HANG_AFTER   hang in the model step after this many payments completed
  CRASH_HANG_IN_WRITE  hang inside payment number N, after logging its start
"""

from __future__ import annotations

import asyncio
import json
import os

from orchestrion import Agent, RunContext, tool
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call

PAYMENTS = 3


def log(event: str, **fields: object) -> None:
    with open(os.environ["CRASH_EFFECTS"], "a") as f:
        f.write(json.dumps({"event": event, **fields}) + "\n")
        f.flush()
        os.fsync(f.fileno())


async def hang(marker: str) -> None:
    log("hanging", at=marker)
    await asyncio.sleep(3600)


@tool(effect="write")
async def pay(ctx: RunContext[None], n: int) -> str:
    """Pay instalment n."""
    log("start", n=n, key=ctx.idempotency_key)
    if os.environ.get("CRASH_HANG_IN_WRITE") == str(n):
        await hang(f"write-{n}")
    log("effect", n=n, key=ctx.idempotency_key)
    return f"paid {n}"


async def policy(request: ModelRequest) -> object:
    done = sum(isinstance(m, ToolResult) for m in request.messages)
    if os.environ.get("CRASH_HANG_AFTER") == str(done):
        await hang(f"model-after-{done}")
    if done < PAYMENTS:
        return call("pay", {"n": done + 1}, id=f"call_{done + 1}")
    return f"paid {PAYMENTS} instalments"


agent = Agent(name="payer", model=FunctionModel(policy), tools=[pay])
