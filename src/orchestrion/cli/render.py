"""How the CLI shows runs: tables, the step timeline, and the live view."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, assert_never

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrion._json import dumps_str
from orchestrion.engine.events import (
    Event,
    InterruptRequested,
    LoopDetected,
    ModelDelta,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from orchestrion.engine.interrupts import Interrupt
from orchestrion.engine.journal import RunRecord, RunStatus, StepStatus
from orchestrion.engine.runtime import StepInfo

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "started": "cyan",
    "interrupted": "yellow",
    "pending": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "stopped": "yellow",
}


def _styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def summarize(result: Any, width: int = 70) -> str:
    """One line for a recorded result."""
    if isinstance(result, dict):
        if "content" in result and "is_error" in result:
            text = ("error: " if result["is_error"] else "") + str(result["content"])
        elif "tool_calls" in result or "text" in result:
            parts = [f"{name}({args})" for _, name, args in result.get("tool_calls", ())]
            if result.get("text"):
                parts.insert(0, repr(result["text"]))
            text = " ".join(parts)
        else:
            text = dumps_str(result)
    else:
        text = result if isinstance(result, str) else dumps_str(result)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="Runs", title_justify="left")
    for column in ("run id", "name", "status", "created", "waiting", "tokens"):
        table.add_column(column)
    for run in runs:
        created = datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M:%S")
        tokens = str(run.usage[0] + run.usage[1]) if run.usage else "0"
        table.add_row(
            Text(run.id), Text(run.name), _styled(run.status.value), created,
            str(len(run.pending) or ""), tokens,
        )
    return table


def timeline(run: RunRecord, steps: list[StepInfo]) -> RenderableType:
    header = Text.assemble(
        ("run ", "bold"), run.id, "  ", (run.name, "bold"), "  ", _styled(run.status.value)
    )
    if run.parent_id:
        header.append(f"  forked from {run.parent_id} at {run.fork_at}", style="dim")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("#", "step", "kind", "status", "ms", "result"):
        table.add_column(column, overflow="fold")
    previous = ""
    for step in steps:
        ms = f"{(step.ended_at - step.started_at) * 1000:.1f}" if step.ended_at else ""
        table.add_row(
            str(step.seq),
            tree_key(step.key, previous),
            step.kind,
            _styled(step.status.value),
            ms,
            Text(summarize(step.result)),
        )
        previous = step.key
    parts: list[RenderableType] = [header, table]
    if run.status is RunStatus.FAILED and run.error:
        parts.append(Text(f"error: {run.error.get('type')}: {run.error.get('message')}", style="red"))
    if run.status is RunStatus.COMPLETED:
        parts.append(Text(f"output: {summarize(run.output, 200)}", style="green"))
    for item in run.pending:
        parts.append(pending_line(Interrupt.from_json(item)))
    return Group(*parts)


def tree_key(key: str, previous: str) -> Text:
    """The key with the path it shares with the previous row dimmed, so nesting reads as a tree."""
    parts, before = key.split("/"), previous.split("/")
    shared = 0
    while shared < min(len(parts), len(before)) - 1 and parts[shared] == before[shared]:
        shared += 1
    head = "/".join(parts[:shared])
    return Text.assemble((head + "/" if head else "", "dim"), "/".join(parts[shared:]))


def pending_line(interrupt: Interrupt) -> Text:
    payload = interrupt.payload
    if interrupt.kind == "approval" and isinstance(payload, dict):
        what = f"{payload.get('tool')}({dumps_str(payload.get('arguments'))})"
    else:
        what = summarize(payload, 120)
    return Text.assemble(
        ("waiting ", "yellow"), (interrupt.id, "bold"), f" [{interrupt.kind}] {what}"
    )


class LiveView:
    """The steps of a run as they happen; render with rich's `Live`."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}
        self.streaming = ""
        self.title = Text("starting…")
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        match event:
            case RunStarted(run_id=run_id, name=name, resumed=resumed):
                self.title = Text.assemble(("run ", "bold"), run_id, " ", (name, "bold"))
                if resumed:
                    self.title.append(" (resumed)", style="dim")
            case StepStarted(key=key, kind=kind):
                self.rows[key] = [key, kind, "started", ""]
                self.streaming = ""
            case StepCompleted(key=key, kind=kind, result=result, replayed=replayed):
                status = "replayed" if replayed else StepStatus.COMPLETED.value
                self.rows[key] = [key, kind, status, summarize(result)]
                self.streaming = ""
            case StepFailed(key=key, kind=kind, error=error):
                self.rows[key] = [key, kind, "failed", error]
            case ModelDelta(text=text):
                self.streaming = (self.streaming + text)[-200:]
            case InterruptRequested(interrupt=interrupt):
                self.rows[interrupt.key] = [interrupt.key, interrupt.kind, "pending", interrupt.id]
            case LoopDetected(key=key, tool=tool, times=times, action=action):
                self.rows[f"{key}#loop{times}"] = [key, "loop", action, f"{tool} repeated {times} times"]
            case RunFinished():
                self.streaming = ""
            case _:
                assert_never(event)

    def __rich__(self) -> RenderableType:
        table = Table(show_edge=False, pad_edge=False, title=self.title, title_justify="left")
        for column in ("step", "kind", "status", "result"):
            table.add_column(column, overflow="fold")
        previous = ""
        for key, kind, status, result in list(self.rows.values())[-30:]:
            table.add_row(tree_key(key, previous), kind, _styled(status), Text(result))
            previous = key
        if self.streaming:
            return Group(table, Text(self.streaming, style="dim italic"))
        return table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)
