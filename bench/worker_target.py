"""The agent of bench/bench_workers.py: STEPS tool calls that each sleep, then an answer.

`agent` is the target the queued runs name (`bench/worker_target.py:agent`): the
worker processes import it, configured by their environment (read once, at import):

  BW_SLEEP   seconds each tool call sleeps (default 0.01)
  BW_STEPS   tool calls per run before the answer (default 3)
  BW_BLOCK   if set, every tool call blocks forever (the worker that is SIGKILLed)
  BW_LOG     a JSONL file: each tool call appends {"pid", "run", "n", "at"} as it
             starts (the recovery measurement only: the drains do not log)
  BW_COUNTS  a directory: at exit each process writes there how many times it ran
             each (run, n) tool call, as COUNTS/<pid>.json (a dict increment per call)

`make_agent(sleep, steps)` builds the same agent in-process (the 10,000-run case),
with a tool that takes no `RunContext` and a model that keeps no requests.

The model is a `FunctionModel` (orchestrion.testing): it calls the tool while the
run has fewer than STEPS tool results, then answers "done".
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrion import Agent, RunContext, tool
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call

SLEEP = float(os.environ.get("BW_SLEEP", "0.01"))
STEPS = int(os.environ.get("BW_STEPS", "3"))
BLOCK = bool(os.environ.get("BW_BLOCK"))
LOG = os.environ.get("BW_LOG")
COUNTS = os.environ.get("BW_COUNTS")

_calls: Counter[str] = Counter()


def _write_counts() -> None:
    if COUNTS:
        path = Path(COUNTS) / f"{os.getpid()}.json"
        path.write_text(json.dumps(dict(_calls)))


if COUNTS:
    atexit.register(_write_counts)


def policy_for(steps: int) -> Callable[[ModelRequest], object]:
    """The model: a tool call while fewer than `steps` tool results came back, then "done"."""

    def policy(request: ModelRequest) -> object:
        done = sum(isinstance(m, ToolResult) for m in request.messages)
        if done < steps:
            return call("lookup", {"n": done + 1}, id=f"call_{done + 1}")
        return "done"

    return policy


class _Forget(list[Any]):
    """A `FunctionModel.requests` that keeps nothing: the fake model would otherwise
    hold every request of every run (a test aid, not what a real model does)."""

    def append(self, _: object) -> None:
        pass


def forgetful(model: FunctionModel) -> FunctionModel:
    model.requests = _Forget()
    return model


async def lookup(ctx: RunContext[None], n: int) -> str:
    """Look up fact n."""
    if COUNTS:
        _calls[f"{ctx.run_id}/{n}"] += 1
    if LOG:
        with open(LOG, "a") as f:
            f.write(
                json.dumps({"pid": os.getpid(), "run": ctx.run_id, "n": n, "at": time.time()})
                + "\n"
            )
    if BLOCK:
        await asyncio.Event().wait()
    await asyncio.sleep(SLEEP)
    return f"fact {n}"


agent = Agent(
    name="bench-worker",
    model=forgetful(FunctionModel(policy_for(STEPS))),
    tools=[tool(lookup)],
    max_turns=STEPS + 1,
)


def make_agent(sleep: float, steps: int, *, keep_requests: bool = False) -> Agent[None, str]:
    """The in-process agent: `steps` calls of a tool sleeping `sleep` s, then "done"."""

    async def lookup(n: int) -> str:
        """Look up fact n."""
        await asyncio.sleep(sleep)
        return f"fact {n}"

    model = FunctionModel(policy_for(steps))
    return Agent(
        name="bench-inproc",
        model=model if keep_requests else forgetful(model),
        tools=[tool(lookup)],
        max_turns=steps + 1,
    )
