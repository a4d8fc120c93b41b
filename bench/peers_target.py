"""The networks of bench/bench_peers.py: alice and bob ping-pong N times (`start N`),
with models that answer at once (a `FunctionModel`), so what is measured is the
orchestration: `spread` has its agents in separate runs with mailboxes on Redis,
`rounds` is the same network in one run (the in-process bus, in rounds).

  BP_REDIS   Redis URL of the mailboxes (default redis://127.0.0.1:6379/0)
"""

from __future__ import annotations

import os
import re

from orchestrion import Agent, PeerNetwork
from orchestrion.bus.redis_mail import RedisMailboxes
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.testing import FunctionModel, call

REDIS_URL = os.environ.get("BP_REDIS", "redis://127.0.0.1:6379/0")
PREFIX = "orchestrion-bench"


def _mail(request: ModelRequest) -> str | None:
    if any(isinstance(m, ToolResult) for m in request.messages):
        return None
    first = request.messages[0]
    assert isinstance(first, UserMessage)
    return first.content


def alice(request: ModelRequest) -> object:
    mail = _mail(request)
    if mail is None:
        return "ok"
    if m := re.search(r"start (\d+)", mail):
        return call("send_message", {"to": "bob", "content": f"ping 1 of {m[1]}"})
    k, n = max((int(a), int(b)) for a, b in re.findall(r"pong (\d+) of (\d+)", mail))
    if k < n:
        return call("send_message", {"to": "bob", "content": f"ping {k + 1} of {n}"})
    return call("finish", {"answer": f"done after {k}"})


def bob(request: ModelRequest) -> object:
    mail = _mail(request)
    if mail is None:
        return "ok"
    k, n = max((int(a), int(b)) for a, b in re.findall(r"ping (\d+) of (\d+)", mail))
    return call("send_message", {"to": "alice", "content": f"pong {k} of {n}"})


def _network(mailboxes: RedisMailboxes | None) -> PeerNetwork:
    return PeerNetwork(
        name="ping-pong",
        agents=[
            Agent(name="alice", model=FunctionModel(alice, name="alice-model")),
            Agent(name="bob", model=FunctionModel(bob, name="bob-model")),
        ],
        mailboxes=mailboxes,
        max_rounds=10_000,
        loop_guard=None,
    )


spread = _network(RedisMailboxes(REDIS_URL, prefix=PREFIX, ttl=600))
rounds = _network(None)
