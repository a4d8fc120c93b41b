"""DBOS anchor workload: the bench's agent as a DBOS workflow of steps on PostgreSQL.

One run = a workflow making `TOOL_CALLS` (model step, tool step) pairs and a final
model step, each a `@DBOS.step` whose output DBOS checkpoints before the workflow
goes on (as orchestrion's `durability="sync"` does), on the bench's PostgreSQL
server, in a system database of its own (`orchestrion_bench_dbos`, created by DBOS
on first launch and kept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from dbos import DBOS

TOOL_CALLS = 10


@DBOS.step()
async def model(n: int) -> dict[str, object]:
    """Fake chat model: scripted tool calls, then a final answer. No I/O."""
    return {"tool": "lookup", "i": n} if n < TOOL_CALLS else {"text": "done"}


@DBOS.step()
async def lookup(i: int) -> str:
    return f"item {i}"


@DBOS.workflow()
async def agent() -> str:
    n = 0
    while True:
        answer = await model(n)
        if "text" in answer:
            return str(answer["text"])
        await lookup(int(str(answer["i"])))
        n += 1


@asynccontextmanager
async def dbos_agent(postgres_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Launch DBOS on `postgres_url`'s server; yield one run of the agent."""
    logging.getLogger("dbos").setLevel(logging.WARNING)
    parts = urlsplit(postgres_url)
    system_db = urlunsplit(parts._replace(path="/orchestrion_bench_dbos", query=""))
    DBOS(config={"name": "orchestrion-bench", "system_database_url": system_db})
    await asyncio.to_thread(DBOS.launch)
    try:
        yield agent
    finally:
        await asyncio.to_thread(DBOS.destroy)
