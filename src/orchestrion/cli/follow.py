"""`orchestrion show RUN --follow` and `orchestrion bus`: a run followed live from
another process, through its events on Redis Streams (`--bus`) or, without a
bus, through its journal in the store."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrion._json import JSON, dumps_str
from orchestrion.bus.redis_streams import follow
from orchestrion.cli.render import console, summarize
from orchestrion.engine.journal import RunStatus
from orchestrion.engine.runtime import Runtime
from orchestrion.engine.store import open_store

WORKING = (RunStatus.RUNNING, RunStatus.QUEUED)
POLL = 0.5
"""Seconds between looks at the journal when following without a bus."""


def event_line(event: dict[str, Any]) -> Text:
    """One line for an event as the bus holds it."""
    kind = event["type"]
    clock = datetime.now().strftime("%H:%M:%S")
    line = Text.assemble((clock, "dim"), " ", (kind, "bold"))
    if "key" in event:
        line.append(f" {event['key']}")
    if kind == "StepCompleted":
        line.append(f"  {summarize(event['result'], 100)}")
    elif kind in ("StepFailed", "Retrying", "FallbackUsed"):
        line.append(f"  {event['error']}", style="red")
    elif kind == "InterruptRequested":
        interrupt = event["interrupt"]
        line.append(f" {interrupt['key']}  waiting: {interrupt['id']}", style="yellow")
    elif kind == "RunFinished":
        line.append(
            f" {event['status']}", style="green" if event["status"] == "completed" else "yellow"
        )
    elif kind == "ModelDelta":
        line.append(f"  {summarize(event['text'], 100)}", style="dim")
    return line


async def follow_run(store: str, run_id: str, bus: str | None, as_json: bool) -> RunStatus:
    """Print the run's events (or its steps, as they are journaled) until it stops
    working; its status then. A run that stopped already: its steps, at once."""
    async with Runtime(open_store(store, read_only=True)) as runtime:
        record = await runtime.get(run_id)
        if bus is not None and record.status in WORKING:
            async for event in follow(bus, run_id):
                _print(event_line(event), event, as_json)
                if event["type"] == "RunFinished":
                    return RunStatus(event["status"])
        return await _poll(runtime, run_id, as_json)


async def _poll(runtime: Runtime, run_id: str, as_json: bool) -> RunStatus:
    seen: dict[str, tuple[str, int]] = {}
    while True:
        record = await runtime.get(run_id)
        for step in await runtime.history(run_id):
            state = (step.status.value, len(step.attempts))
            if seen.get(step.key) != state:
                seen[step.key] = state
                data: dict[str, JSON] = {"type": "Step", **step.to_json()}
                line = Text.assemble(
                    (time.strftime("%H:%M:%S"), "dim"),
                    f" {step.status.value} {step.key}  ",
                    summarize(step.result, 100),
                )
                _print(line, data, as_json)
        if record.status not in WORKING:
            return record.status
        await asyncio.sleep(POLL)


def _print(line: Text, data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(dumps_str(data), flush=True)
    else:
        console().print(line, soft_wrap=True)


def streams_table(found: list[dict[str, JSON]]) -> Table:
    table = Table(title="Streams", title_justify="left")
    for column in ("stream", "length", "last id", "group", "consumers", "pending", "lag"):
        table.add_column(column)
    for stream in found:
        groups: list[Any] = stream["groups"] or [{}]  # type: ignore[assignment]
        for g in groups:
            table.add_row(
                str(stream["stream"]),
                str(stream["length"]),
                str(stream["last_id"]),
                str(g.get("name", "")),
                str(g.get("consumers", "")),
                str(g.get("pending", "")),
                "" if g.get("lag") is None else str(g["lag"]),
            )
    return table


def networks_table(found: list[dict[str, JSON]]) -> Table:
    table = Table(title="Peer networks with mailboxes", title_justify="left")
    for column in ("network", "run", "agents", "posted", "in flight", "outcome"):
        table.add_column(column)
    for net in found:
        agents: list[Any] = net["agents"]  # type: ignore[assignment]
        table.add_row(
            str(net["network"]),
            str(net["run_id"]),
            ", ".join(map(str, agents)),
            str(net["posted"]),
            str(net["in_flight"]),
            str(net["outcome"] or "working"),
        )
    return table
