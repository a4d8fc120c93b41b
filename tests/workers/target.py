"""Runs for the worker tests: each looks something up, then pays, through tools.

Environment (set by the test):
  WK_EFFECTS     JSONL file where the tools log what they do
  WK_LOOKUPS     read-tool calls before the payment (default 2)
  WK_SLEEP       seconds each read-tool call takes (default 0.01)
  WK_GATE        a file: a payment, once started, waits until it exists
  WK_STEP_GATE   a file: each read-tool call, once started, waits until it exists
  WK_RATE        model requests a minute that `limited` runs may make, all workers together

The payee is idempotent, as a real payment API is: a payment whose idempotency
key was already paid is logged as `duplicate` and has no second effect.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from orchestrion import Agent, Breaker, ModelError, Policy, RateLimit, RunContext, tool
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call


def log(event: str, **fields: object) -> None:
    with open(os.environ["WK_EFFECTS"], "a") as f:
        f.write(
            json.dumps({"event": event, "pid": os.getpid(), "at": time.time(), **fields}) + "\n"
        )
        f.flush()
        os.fsync(f.fileno())


def logged(event: str) -> list[dict[str, object]]:
    try:
        with open(os.environ["WK_EFFECTS"]) as f:
            return [e for e in map(json.loads, f) if e["event"] == event]
    except FileNotFoundError:
        return []


async def until(gate: str | None) -> None:
    while gate and not os.path.exists(gate):
        await asyncio.sleep(0.02)


async def lookup(ctx: RunContext[None], n: int) -> str:
    """Look up fact n."""
    log("lookup", run=ctx.run_id, n=n)
    await asyncio.sleep(float(os.environ.get("WK_SLEEP", "0.01")))
    await until(os.environ.get("WK_STEP_GATE"))
    log("looked", run=ctx.run_id, n=n)
    return f"fact {n}"


async def pay(ctx: RunContext[None], amount: int) -> str:
    """Pay amount."""
    key = ctx.idempotency_key
    log("start", run=ctx.run_id, key=key)
    await until(os.environ.get("WK_GATE"))
    if any(e["key"] == key for e in logged("effect")):
        log("duplicate", run=ctx.run_id, key=key)
    else:
        log("effect", run=ctx.run_id, key=key, amount=amount)
    return f"paid {amount}"


async def policy(request: ModelRequest) -> object:
    done = sum(isinstance(m, ToolResult) for m in request.messages)
    lookups = int(os.environ.get("WK_LOOKUPS", "2"))
    if done < lookups:
        return call("lookup", {"n": done + 1}, id=f"call_{done + 1}")
    if done == lookups:
        return call("pay", {"amount": 100}, id="call_pay")
    return "paid 100"


model = FunctionModel(policy)
agent = Agent(name="payer", model=model, tools=[tool(lookup), tool(effect="write")(pay)])
approved = Agent(
    name="payer", model=model, tools=[tool(lookup), tool(effect="write", approval=True)(pay)]
)


async def limited_policy(request: ModelRequest) -> object:
    log("model", kind="limited")
    if not any(isinstance(m, ToolResult) for m in request.messages):
        return call("lookup", {"n": 1}, id="call_1")
    return "looked it up"


async def failing(request: ModelRequest) -> object:
    log("model", kind="failing")
    raise ModelError("HTTP 503 from the provider (injected)", status_code=503, transient=True)


limited = Agent(
    name="limited",
    model=FunctionModel(limited_policy, name="limited-model"),
    tools=[tool(lookup)],
    policy=Policy(
        rate_limit=RateLimit(requests=int(os.environ.get("WK_RATE", "3")), per=60, max_wait=0.2)
    ),
)
flaky = Agent(
    name="flaky",
    model=FunctionModel(failing, name="flaky-model"),
    policy=Policy(retry=False, breaker=Breaker(failures=2, window=60, cooldown=60)),
)
