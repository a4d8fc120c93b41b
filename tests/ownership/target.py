"""A run for the multi-process ownership tests: payments through a write tool.

Environment (set by the test):
  OWN_EFFECTS   JSONL file where the tool and the model log what they do
  OWN_PAYMENTS  how many payments the model asks for (default 1)
  OWN_GATE      a file: before its second request the model waits until it exists
  OWN_PAY_SLEEP seconds each payment takes (widens races; default 0)
"""

from __future__ import annotations

import asyncio
import json
import os

from orchestrion import Agent, RunContext, tool
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call


def log(event: str, **fields: object) -> None:
    with open(os.environ["OWN_EFFECTS"], "a") as f:
        f.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")
        f.flush()
        os.fsync(f.fileno())


async def pay(ctx: RunContext[None], n: int) -> str:
    """Pay instalment n."""
    log("start", n=n, key=ctx.idempotency_key)
    await asyncio.sleep(float(os.environ.get("OWN_PAY_SLEEP", "0")))
    log("effect", n=n, key=ctx.idempotency_key)
    return f"paid {n}"


async def policy(request: ModelRequest) -> object:
    done = sum(isinstance(m, ToolResult) for m in request.messages)
    gate = os.environ.get("OWN_GATE")
    if gate and done == 1:
        log("waiting")
        while not os.path.exists(gate):
            await asyncio.sleep(0.02)
    if done < int(os.environ.get("OWN_PAYMENTS", "1")):
        return call("pay", {"n": done + 1}, id=f"call_{done + 1}")
    return f"paid {done} instalments"


model = FunctionModel(policy)
agent = Agent(name="payer", model=model, tools=[tool(effect="write")(pay)])
approved = Agent(name="payer", model=model, tools=[tool(effect="write", approval=True)(pay)])
