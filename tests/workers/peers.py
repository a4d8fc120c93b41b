"""A `PeerNetwork` whose agents run as separate runs, for the mailbox tests.

`ping_pong`: the user asks alice for N rounds (`start N`); alice sends bob
`ping k of N`, bob answers `pong k of N`, and after the Nth pong alice finishes
with `done after N`. `chatter`: the same
without a finish (the network ends when the mail runs out). Every model call is
logged (`WK_EFFECTS`, JSONL) with the run and the mail it read, so a test sees
what was acted on and how many times.

Environment (set by the test):
  WK_EFFECTS      JSONL file of what the agents did
  ORCHESTRION_TEST_REDIS  Redis URL of the mailboxes (default redis://127.0.0.1:6379/0)
  WK_SLEEP        seconds each of bob's turns takes (default 0)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

from orchestrion import Agent, ModelError, PeerNetwork, Sequential
from orchestrion.bus.redis_mail import RedisMailboxes
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.testing import FunctionModel, call

REDIS_URL = os.environ.get("ORCHESTRION_TEST_REDIS", "redis://127.0.0.1:6379/0")
PREFIX = "orchestrion-test"
MAILBOXES = RedisMailboxes(REDIS_URL, prefix=PREFIX, block=0.2, ttl=600)


def log(event: str, **fields: object) -> None:
    path = os.environ.get("WK_EFFECTS")
    if not path:
        return
    with open(path, "a") as f:
        f.write(
            json.dumps({"event": event, "pid": os.getpid(), "at": time.time(), **fields}) + "\n"
        )
        f.flush()
        os.fsync(f.fileno())


def read(request: ModelRequest) -> str:
    first = request.messages[0]
    assert isinstance(first, UserMessage)
    return first.content


def answered(request: ModelRequest) -> bool:
    return any(isinstance(m, ToolResult) for m in request.messages)


def alice_policy(finishes: bool):
    def policy(request: ModelRequest) -> object:
        if answered(request):
            return "ok"
        mail = read(request)
        log("alice", mail=mail)
        if m := re.search(r"start (\d+)", mail):
            ping = f"ping 1 of {m[1]}"
            return call("send_message", {"to": "bob", "content": ping}, id="a1")
        k, rounds = max((int(a), int(b)) for a, b in re.findall(r"pong (\d+) of (\d+)", mail))
        if k < rounds:
            ping = f"ping {k + 1} of {rounds}"
            return call("send_message", {"to": "bob", "content": ping}, id="a2")
        if finishes:
            return call("finish", {"answer": f"done after {k}"}, id="a3")
        return "no more"

    return policy


async def bob_policy(request: ModelRequest) -> object:
    if answered(request):
        return "ok"
    mail = read(request)
    log("bob", mail=mail)
    await asyncio.sleep(float(os.environ.get("WK_SLEEP", "0")))
    k, rounds = max((int(a), int(b)) for a, b in re.findall(r"ping (\d+) of (\d+)", mail))
    pong = f"pong {k} of {rounds}"
    return call("send_message", {"to": "alice", "content": pong}, id="b1")


def network(name: str, finishes: bool, max_rounds: int = 10) -> PeerNetwork:
    return PeerNetwork(
        name=name,
        agents=[
            Agent(name="alice", model=FunctionModel(alice_policy(finishes), name="alice-model")),
            Agent(name="bob", model=FunctionModel(bob_policy, name="bob-model")),
        ],
        mailboxes=MAILBOXES,
        max_rounds=max_rounds,
        loop_guard=None,
    )


async def broken_policy(request: ModelRequest) -> object:
    raise ModelError("the model is gone (injected)", status_code=400)


ping_pong = network("ping-pong", finishes=True)
chatter = network("chatter", finishes=False)
short = network("short", finishes=True, max_rounds=2)
broken = PeerNetwork(
    name="broken",
    agents=[
        Agent(name="alice", model=FunctionModel(alice_policy(True), name="alice-model")),
        Agent(name="bob", model=FunctionModel(broken_policy, name="broken-model")),
    ],
    mailboxes=MAILBOXES,
)
pipeline = Sequential(name="pipeline", members=[ping_pong])
"""The network as a member of another pattern: its agents are found through it."""
