"""Mailboxes on Redis Streams for the agents of a `PeerNetwork` that run as
separate runs on any worker: `PeerNetwork(..., mailboxes=RedisMailboxes(url))`.

One network's run (its `box`) has, under the hash tag `{box}` (one slot in a
Redis Cluster, so each script touches one node):

    {prefix}:mail:{box}:in:AGENT   a stream per agent, read by its consumer group `agents`
    {prefix}:mail:{box}:reports    the network's reports (finish, exceeded, failed, quiet)
    {prefix}:mail:{box}:log        every message posted, in posting order
    {prefix}:mail:{box}:sent       ids of the messages and reports posted (each posted once)
    {prefix}:mail:{box}:done       ids of the messages acted on
    {prefix}:mail:{box}:flight     messages posted and not acted on yet
    {prefix}:mail:{box}:meta       the network's name, run id and agents

An agent's run reads its stream through the group, as the consumer named by its
run id, journals what it read, then acknowledges it (XACK): mail read by a run
that died before journaling it stays pending for that consumer and is read again
first when the run resumes. Posting, acting on and reporting are Lua scripts, so
that "posted once" and the in-flight count stay exact when a call is repeated
after a crash. For the same reason every call can be retried when the connection
drops, and is (for about 15 s) before the step fails. Once the network closes, its keys expire after `ttl` seconds.
`orchestrion bus` lists the streams, with what each group has pending and lagging.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.bus.redis_streams import DEFAULT_PREFIX, as_text, connect
from orchestrion.errors import RunError
from orchestrion.redact import redact_url

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger("orchestrion.bus")

GROUP = "agents"
"""The consumer group of every agent's stream."""
BATCH = 100
"""Messages an agent takes from its mailbox at most at once."""
UNREAD_AFTER = 30
"""Seconds a network waits before it logs the agents that never read their mailbox."""
PATIENCE = 10
"""Retries of a call whose connection failed (0.1 s apart, doubling up to 2 s)."""

_POST = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1], 'from', ARGV[2], 'content', ARGV[4])
redis.call('XADD', KEYS[4], '*', 'id', ARGV[1], 'from', ARGV[2], 'to', ARGV[3], 'content', ARGV[4])
return 1
"""
"""KEYS: sent, flight, the recipient's stream, log. ARGV: id, from, to, content."""

_DONE = """
local n = 0
for _, id in ipairs(ARGV) do n = n + redis.call('SADD', KEYS[1], id) end
if n == 0 then return -1 end
local left = redis.call('DECRBY', KEYS[2], n)
if left <= 0 then redis.call('XADD', KEYS[3], '*', 'report', '{"type":"quiet"}') end
return left
"""
"""KEYS: done, flight, reports. ARGV: the ids of the messages acted on."""

_REPORT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'report', ARGV[2])
return 1
"""
"""KEYS: sent, reports. ARGV: the report's id, the report (JSON)."""

_STOP = """
for i = 2, #KEYS do
  if redis.call('HSETNX', KEYS[1], 'stop:' .. KEYS[i], '1') == 1 then
    redis.call('XADD', KEYS[i], '*', 'stop', '1')
  end
end
return 1
"""
"""KEYS: sent, then each agent's stream."""


class RedisMailboxes:
    """The mailboxes of networks whose agents run apart, on Redis Streams at `url`.
    `block`: seconds of one blocking read (a read is repeated until mail comes);
    `ttl`: seconds a closed network's keys are kept, for `orchestrion bus`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 86_400,
        block: float = 1.0,
    ) -> None:
        self.url = redact_url(url)
        self.prefix = prefix
        self.ttl = int(ttl)
        self.block = block
        self._raw_url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        connect(url)  # a wrong URL or a missing package fails at definition

    def __repr__(self) -> str:
        return f"RedisMailboxes({self.url!r})"

    # -- the network's run ---------------------------------------------------

    async def open(self, box: str, network: str, run_id: str, agents: Sequence[str]) -> None:
        client = self._client()
        for agent in agents:
            try:
                await client.xgroup_create(self._key(box, "in", agent), GROUP, "0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise self._failed("open the mailboxes of", network, exc) from exc
        listed = dumps_str(list(agents))
        await client.hset(
            self._key(box, "meta"),
            mapping={"network": network, "run_id": run_id, "agents": listed},
        )

    async def outcome(self, box: str) -> dict[str, JSON]:
        client, reports, last = self._client(), self._key(box, "reports"), "0"
        look_at = time.monotonic() + UNREAD_AFTER
        while True:
            answer: Any = await client.xread({reports: last}, count=1, block=self._block_ms)
            for _, entries in answer or ():
                for _, fields in entries:
                    report: dict[str, JSON] = loads(fields[b"report"])
                    if report.get("type") == "quiet":  # the network's output is the mail
                        report["messages"] = await self._messages(box)
                    return report
            if time.monotonic() > look_at:
                look_at = float("inf")  # once per wait
                await self._warn_unread(box)
            if not await client.exists(self._key(box, "meta")):
                raise RunError(
                    f"The mailboxes of network run {box} are gone from {self.url}: Redis "
                    "lost its data (restarted without persistence?) or they expired. Mail "
                    "in flight is lost; run the network again."
                )

    async def close(self, box: str, agents: Sequence[str]) -> None:
        client = self._client()
        streams = await self._stop(box, agents)
        pipe = client.pipeline(transaction=False)
        for key in [*streams, *(self._key(box, part) for part in _PARTS)]:
            pipe.expire(key, self.ttl)
        await pipe.execute()

    # -- an agent's run ------------------------------------------------------

    async def post(self, box: str, mail_id: str, sender: str, to: str, content: str) -> None:
        keys = (
            self._key(box, "sent"),
            self._key(box, "flight"),
            self._key(box, "in", to),
            self._key(box, "log"),
        )
        await self._client().eval(_POST, 4, *keys, mail_id, sender, to, content)

    async def receive(self, box: str, agent: str, reader: str) -> list[dict[str, JSON]]:
        client, stream = self._client(), self._key(box, "in", agent)
        try:
            # What this reader took and did not acknowledge (it died before journaling it).
            answer: Any = await client.xreadgroup(GROUP, reader, {stream: "0"}, count=BATCH)
            while not answer or not answer[0][1]:
                answer = await client.xreadgroup(
                    GROUP, reader, {stream: ">"}, count=BATCH, block=self._block_ms
                )
        except Exception as exc:
            if "NOGROUP" in str(exc):  # the network closed and its mailboxes expired
                return [{"entry": "0-0", "stop": "1"}]
            raise
        return [_letter(entry, fields) for entry, fields in answer[0][1]]

    async def ack(self, box: str, agent: str, entries: Sequence[str]) -> None:
        taken = [e for e in entries if e != "0-0"]
        if taken:
            await self._client().xack(self._key(box, "in", agent), GROUP, *taken)

    async def done(self, box: str, mail_ids: Sequence[str]) -> None:
        if mail_ids:
            keys = (self._key(box, "done"), self._key(box, "flight"), self._key(box, "reports"))
            left: Any = await self._client().eval(_DONE, 3, *keys, *mail_ids)
            if left == 0:  # quiet: the agents stop without waiting for the network's run
                await self._stop(box)

    async def report(self, box: str, report_id: str, report: dict[str, JSON]) -> None:
        keys = (self._key(box, "sent"), self._key(box, "reports"))
        await self._client().eval(_REPORT, 2, *keys, report_id, dumps_str(report))
        await self._stop(box)  # every report ends the network: its agents stop now

    # -- inspecting ------------------------------------------------------------

    async def messages(self, box: str) -> list[JSON]:
        """Every message posted in network run `box`, in posting order."""
        return await self._messages(box)

    async def aclose(self) -> None:
        """Close the client of the running event loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- internals -------------------------------------------------------------

    @property
    def _block_ms(self) -> int:
        return max(1, int(self.block * 1000))

    def _key(self, box: str, *parts: str) -> str:
        return ":".join([self.prefix, "mail", f"{{{box}}}", *parts])

    def _client(self) -> redis.asyncio.Redis:
        """A client for the running event loop (a client is bound to the loop it
        first ran in, and a worker's runs share one loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = connect(self._raw_url, patience=PATIENCE)
        return client

    async def _stop(self, box: str, agents: Sequence[str] | None = None) -> list[str]:
        """Put a stop in each agent's mailbox, once per mailbox; the mailboxes' keys."""
        client = self._client()
        if agents is None:
            listed: Any = await client.hget(self._key(box, "meta"), "agents")
            agents = loads(listed or b"[]")
        streams = [self._key(box, "in", a) for a in agents]
        await client.eval(_STOP, 1 + len(streams), self._key(box, "sent"), *streams)
        return streams

    async def _warn_unread(self, box: str) -> None:
        """Log the agents that never read their mailbox: their runs found no worker slot."""
        client = self._client()
        meta = _network(await client.hgetall(self._key(box, "meta")))
        unread = []
        agents: Any = meta["agents"]
        for agent in agents:
            groups: Any = await client.xinfo_groups(self._key(box, "in", str(agent)))
            if not any(g["consumers"] for g in groups):
                unread.append(agent)
        if unread:
            log.warning(
                "PeerNetwork %s (run %s): agents %s have not read their mailboxes after %d s. "
                "Are the workers' slots all taken? A network holds one slot per agent, plus "
                "one, while it works: raise --concurrency, or add workers.",
                meta["network"],
                meta["run_id"],
                unread,
                UNREAD_AFTER,
            )

    async def _messages(self, box: str) -> list[JSON]:
        entries: Any = await self._client().xrange(self._key(box, "log"))
        return [
            {
                "from": as_text(f[b"from"]),
                "to": as_text(f[b"to"]),
                "content": as_text(f[b"content"]),
            }
            for _, f in entries
        ]

    def _failed(self, doing: str, network: str, exc: Exception) -> RunError:
        return RunError(
            f"Could not {doing} PeerNetwork {network!r} on {self.url}: {type(exc).__name__}: {exc}"
        )


_PARTS = ("reports", "log", "sent", "done", "flight", "meta")


async def networks(url: str, prefix: str = DEFAULT_PREFIX) -> list[dict[str, JSON]]:
    """The networks with mailboxes under `prefix`: each one's name, run, agents, the
    messages posted and still in flight, and its first report (`None` while it works)."""
    client = connect(url)
    found: list[dict[str, JSON]] = []
    try:
        async for raw in client.scan_iter(match=f"{prefix}:mail:*:meta", count=500):
            meta_key = as_text(raw)
            base = meta_key.removesuffix(":meta")
            meta = _network(await client.hgetall(meta_key))
            pipe = client.pipeline(transaction=False)
            pipe.get(f"{base}:flight")
            pipe.xlen(f"{base}:log")
            pipe.xrange(f"{base}:reports", count=1)
            flight, posted, reports = await pipe.execute()
            report = loads(reports[0][1][b"report"]) if reports else None
            found.append(
                {
                    "box": base.rsplit(":", 1)[-1].strip("{}"),
                    **meta,
                    "posted": posted,
                    "in_flight": int(flight or 0),
                    "outcome": None if report is None else report.get("type"),
                }
            )
    finally:
        await client.aclose()
    return sorted(found, key=lambda n: (str(n["network"]), str(n["run_id"])))


def _network(meta: Any) -> dict[str, JSON]:
    """A network's `meta` hash as `open` wrote it: its name, run id and agents."""
    return {
        "network": as_text(meta.get(b"network", b"")),
        "run_id": as_text(meta.get(b"run_id", b"")),
        "agents": loads(meta.get(b"agents", b"[]")),
    }


def _letter(entry: bytes, fields: dict[bytes, bytes] | None) -> dict[str, JSON]:
    if not fields:  # deleted from the stream while pending: nothing to read
        return {"entry": as_text(entry)}
    if b"stop" in fields:
        return {"entry": as_text(entry), "stop": "1"}
    return {
        "entry": as_text(entry),
        "id": as_text(fields[b"id"]),
        "from": as_text(fields[b"from"]),
        "content": as_text(fields[b"content"]),
    }
