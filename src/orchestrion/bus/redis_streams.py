"""Run events on Redis Streams: each event of a run is appended to the stream
`{prefix}:events:{run_id}`, so that a process on any machine follows a run live
(`orchestrion show RUN --follow --bus redis://...`) wherever it works.

Publishing never slows or breaks a run: `RedisEvents` is a sink that queues each
event in the process, and one task sends what is queued in pipelined batches.
If Redis is unreachable, events are dropped and counted (`dropped`), and a
warning is logged once per outage; the journal, not the bus, is the record.
A stream keeps its last `maxlen` events and expires `ttl` seconds after its run
stops working.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from orchestrion._json import JSON, dumps_str, loads, to_jsonable
from orchestrion.engine.events import Event, InterruptRequested, RunFinished
from orchestrion.errors import UserError
from orchestrion.redact import redact_url

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger("orchestrion.bus")

DEFAULT_PREFIX = "orchestrion"


def events_stream(run_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:events:{run_id}"


def event_json(event: Event) -> dict[str, JSON]:
    """An event as the stream holds it: its fields, and its `type`."""
    data: dict[str, JSON] = {"type": type(event).__name__, "run_id": event.run_id}
    if isinstance(event, RunFinished):
        r = event.result
        data.update(
            status=r.status.value,
            output=to_jsonable(r.value),
            error=r.error,
            usage=r.usage.to_json(),
        )
    elif isinstance(event, InterruptRequested):
        data["interrupt"] = event.interrupt.to_json()
    else:
        for f in dataclasses.fields(event):
            data[f.name] = getattr(event, f.name)
    return data


def connect(url: str, *, patience: int = 0) -> redis.asyncio.Redis:
    """A client for `url` (`redis://host:port/db`), with a clear error without the
    package. `patience`: how many times a command is retried, with exponential
    backoff (up to 2 s apart), when the connection fails; only for commands that a
    retry cannot apply twice."""
    try:
        import redis.asyncio
    except ImportError:
        raise UserError(
            f"The bus {redact_url(url)} needs the redis package: pip install 'orchestrion[redis]'."
        ) from None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UserError(f"Bus URL {redact_url(url)!r}: use redis://host:6379/0 (or rediss://).")
    if not patience:
        return redis.asyncio.Redis.from_url(url)
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=patience)
    return redis.asyncio.Redis.from_url(url, retry=retry)


class RedisEvents:
    """A sink publishing every event of the runs of a runtime to Redis Streams:
    `Runtime(sinks=[RedisEvents("redis://127.0.0.1:6379/0")])`. Close it
    (`await sink.aclose()`) to send what is still queued."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int = 10_000,
        ttl: float = 86_400,
    ) -> None:
        self.url = redact_url(url)
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl = int(ttl)
        self.dropped = 0
        """Events not published because Redis was unreachable."""
        self._client = connect(url)
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def __call__(self, event: Event) -> None:
        self._queue.put_nowait(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._send(), name="orchestrion-redis-events", context=contextvars.Context()
            )

    async def _send(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            events = [e for e in batch if e is not None]
            if events:
                await self._publish(events)
            if None in batch:
                return

    async def _publish(self, events: list[Event]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            stream = events_stream(event.run_id, self.prefix)
            pipe.xadd(
                stream,
                {"event": dumps_str(event_json(event))},
                maxlen=self.maxlen,
                approximate=True,
            )
            if isinstance(event, RunFinished):
                pipe.expire(stream, self.ttl)
        try:
            await pipe.execute()
        except Exception as exc:  # the bus is an observer: a run never fails for it
            self.dropped += len(events)
            if not self._failing:
                log.warning("publishing run events to %s failed: %s", self.url, exc)
            self._failing = True
        else:
            self._failing = False

    async def aclose(self) -> None:
        """Send what is queued, then close the connection."""
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._task
        await self._client.aclose()


async def follow(
    url: str, run_id: str, *, prefix: str = DEFAULT_PREFIX, block: float = 1.0
) -> AsyncIterator[dict[str, Any]]:
    """The events of run `run_id` from the first the stream holds, then as they are
    published, until one says the run stopped working here (`RunFinished`)."""
    client = connect(url)
    stream = events_stream(run_id, prefix)
    last = "0"
    try:
        while True:
            answer: Any = await client.xread({stream: last}, block=int(block * 1000), count=500)
            for _, entries in answer or ():
                for entry_id, fields in entries:
                    last = entry_id
                    event: dict[str, Any] = loads(fields[b"event"])
                    yield event
                    if event["type"] == "RunFinished":
                        return
    finally:
        await client.aclose()


async def streams(url: str, prefix: str = DEFAULT_PREFIX) -> list[dict[str, JSON]]:
    """Every stream under `prefix`: its length, its last entry's id, and for each
    consumer group the messages pending (delivered, not acknowledged) and lagging
    (not yet delivered)."""
    client = connect(url)
    found: list[dict[str, JSON]] = []
    try:
        async for raw in client.scan_iter(match=f"{prefix}:*", _type="stream", count=500):
            name = raw.decode()
            info = await client.xinfo_stream(name)
            groups = await client.xinfo_groups(name)
            found.append(
                {
                    "stream": name,
                    "length": info["length"],
                    "last_id": as_text(info["last-generated-id"]),
                    "groups": [
                        {
                            "name": as_text(g["name"]),
                            "consumers": g["consumers"],
                            "pending": g["pending"],
                            "lag": g.get("lag"),
                        }
                        for g in groups
                    ],
                }
            )
    finally:
        await client.aclose()
    return sorted(found, key=lambda s: str(s["stream"]))


def as_text(value: object) -> str:
    """A value Redis gave back (bytes, mostly) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
