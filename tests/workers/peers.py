"""A `PeerNetwork` whose agents run as separate runs, for the mailbox tests.

`ping_pong`: the user asks alice for N rounds; alice sends bob `ping k`, bob answers
`pong k`, and after `pong N` alice finishes with `done after N`. `chatter`: the same
without a finish (the network ends when the mail runs out). Every model call is
logged (`WK_EFFECTS`, JSONL) with the run and the mail it read, so a test sees
what was acted on and how many times.

Environment (set by the test):
  WK_EFFECTS      JSONL file of what the agents did
  WK_REDIS        Redis URL of the mailboxes (default redis://127.0.0.1:6379/0)
  WK_SLEEP        seconds each of bob's turns takes (default 0)
  WK_MAX_ROUNDS   turns an agent may take (default 10)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

from orchestrion import Agent, PeerNetwork
from orchestrion.bus.redis_mail import RedisMailboxes
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.testing import FunctionModel, call

MAILBOXES = RedisMailboxes(
    os.environ.get("WK_REDIS", "redis://127.0.0.1:6379/0"), prefix="orchestrion-test", block=0.2
)


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
        if re.search(r"start \d+", mail):
            return call("send_message", {"to": "bob", "content": "ping 1"}, id="a1")
        rounds = int(os.environ.get("WK_ROUNDS", "3"))
        k = max(int(n) for n in re.findall(r"pong (\d+)", mail))
        if k >= rounds:
            if finishes:
                return call("finish", {"answer": f"done after {k}"}, id="a2")
            return "no more"
        return call("send_message", {"to": "bob", "content": f"ping {k + 1}"}, id="a3")

    return policy


async def bob_policy(request: ModelRequest) -> object:
    if answered(request):
        return "ok"
    mail = read(request)
    log("bob", mail=mail)
    await asyncio.sleep(float(os.environ.get("WK_SLEEP", "0")))
    k = max(int(n) for n in re.findall(r"ping (\d+)", mail))
    return call("send_message", {"to": "alice", "content": f"pong {k}"}, id="b1")


def network(name: str, finishes: bool) -> PeerNetwork:
    return PeerNetwork(
        name=name,
        agents=[
            Agent(name="alice", model=FunctionModel(alice_policy(finishes), name="alice-model")),
            Agent(name="bob", model=FunctionModel(bob_policy, name="bob-model")),
        ],
        mailboxes=MAILBOXES,
        max_rounds=int(os.environ.get("WK_MAX_ROUNDS", "10")),
        loop_guard=None,
    )


ping_pong = network("ping-pong", finishes=True)
chatter = network("chatter", finishes=False)
