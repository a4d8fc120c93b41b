"""How the CLI shows runs: tables, the step timeline, and the live view."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, assert_never

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestrion import keys
from orchestrion._json import dumps_str
from orchestrion.engine.costs import Totals, by_agent_and_model, spent
from orchestrion.engine.events import (
    BreakerChanged,
    Event,
    FallbackUsed,
    InterruptRequested,
    LoopGuardTriggered,
    ModelDelta,
    Retrying,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
    Transferred,
)
from orchestrion.engine.interrupts import Interrupt
from orchestrion.engine.journal import RunRecord, RunStatus, StepStatus
from orchestrion.engine.records import AttemptFailed, ModelResponded, StepRaised, read
from orchestrion.engine.result import StepInfo
from orchestrion.messages import Usage

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "queued": "blue",
    "started": "cyan",
    "interrupted": "yellow",
    "pending": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "stopped": "yellow",
    "replayed": "dim",
    "warn": "yellow",
    "stop": "yellow",
    "transferred": "cyan",
    "retrying": "yellow",
    "fallback": "yellow",
    "open": "red",
    "half-open": "yellow",
    "closed": "green",
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
    for column in ("run id", "name", "status", "created", "waiting", "tokens", "cost"):
        table.add_column(column, justify="right" if column in ("tokens", "cost") else "left")
    now = time.time()
    for run in runs:
        created = datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M:%S")
        usage = Usage.from_json(run.usage) if run.usage else Usage()
        status = _styled(run.status.value)
        orphaned = run.orphaned_since(now)
        if orphaned is not None:
            status.append(f" · orphaned since {_clock(orphaned)}", style="red")
        table.add_row(
            Text(run.id),
            Text(run.name),
            status,
            created,
            str(len(run.pending) or ""),
            str(usage.total_tokens),
            dollars(usage.cost),
        )
    return table


def dollars(cost: float) -> str:
    """A cost in USD, to the cent or to its first significant digits below one; empty
    for nothing (an unpriced model's cost is not known, not zero)."""
    if not cost:
        return ""
    return f"${cost:,.2f}" if cost >= 1 else f"${cost:.2g}" if cost < 0.0001 else f"${cost:.4f}"


def agents_table(steps: list[StepInfo]) -> Table | None:
    """What each agent's model calls spent, per model (None for a run with at most one
    model call: its line says it all). Before the run's outcome, which stays last."""
    totals = by_agent_and_model(steps)
    if sum(t.calls for t in totals.values()) < 2:
        return None
    table = Table(title="model calls by agent", title_justify="left", show_edge=False)
    for column in ("agent", "model", "calls", "input", "output", "cost", "model time"):
        table.add_column(column, justify="left" if column in ("agent", "model") else "right")
    whole = Totals()
    for (agent, model), t in totals.items():
        u = t.usage
        row = (str(t.calls), str(u.input_tokens), str(u.output_tokens), dollars(u.cost))
        table.add_row(agent, model, *row, f"{t.seconds:.2f} s")
        whole.merge(t)
    if len(totals) > 1:
        u = whole.usage
        table.add_row(
            Text("total", style="bold"), "", str(whole.calls), str(u.input_tokens),
            str(u.output_tokens), dollars(u.cost), f"{whole.seconds:.2f} s",
        )  # fmt: skip
    return table


def run_tree(run: RunRecord, steps: list[StepInfo]) -> RenderableType:
    """A run as a tree of its members (agents and patterns), each with its steps."""
    ordered = sorted(steps, key=lambda step: step.seq)
    body = step_tree([_Step.of(step) for step in ordered], fallback=run.name)
    agents = agents_table(ordered)
    return Group(_run_header(run), body, *([agents] if agents else []), *_run_footer(run))


def timeline(run: RunRecord, steps: list[StepInfo]) -> RenderableType:
    """A run's steps as a flat table, in the order they were journaled."""
    agents = agents_table(steps)
    return Group(_run_header(run), _Flat(steps), *([agents] if agents else []), *_run_footer(run))


_FLAT_OTHERS = 50
"""Columns of the flat table besides the key, at their narrowest (with the borders)."""


@dataclass(frozen=True, slots=True)
class _Flat:
    """The flat table, laid out for the width it gets: a key is never broken where it
    fits beside the other columns (the result gives way first); only a terminal too
    narrow for it folds it."""

    steps: list[StepInfo]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        longest = max((len(step.key) for step in self.steps), default=0)
        whole = longest + _FLAT_OTHERS <= options.max_width
        table = Table(show_edge=False, pad_edge=False)
        for column in ("#", "step", "kind", "status", "ms", "result"):
            table.add_column(column, overflow="fold", no_wrap=whole and column == "step")
        previous = ""
        for step in self.steps:
            ms = f"{(step.ended_at - step.started_at) * 1000:.1f}" if step.ended_at else ""
            table.add_row(
                str(step.seq),
                tree_key(step.key, previous),
                step.kind,
                _styled(step.status.value),
                ms,
                _with_attempts(Text(summarize(step.result)), step),
            )
            previous = step.key
        yield table


def _run_header(run: RunRecord) -> Text:
    header = Text.assemble(
        ("run ", "bold"), run.id, "  ", (run.name, "bold"), "  ", _styled(run.status.value)
    )
    if run.parent_id:
        header.append(f"  forked from {run.parent_id} at {run.fork_at}", style="dim")
    ownership = ownership_line(run, time.time())
    if ownership:
        header.append("\n" + ownership, style="red" if "orphaned" in ownership else "dim")
    return header


def ownership_line(run: RunRecord, now: float) -> str:
    """Who works on a `running` run, or since when nobody does (empty for other runs)."""
    if run.status is not RunStatus.RUNNING:
        return ""
    orphaned = run.orphaned_since(now)
    if orphaned is not None and run.queue is not None:
        return (
            f"without a worker since {_clock(orphaned)}: a worker on queue {run.queue!r} "
            "takes it over from its journal"
        )
    if orphaned is not None:
        return (
            f"orphaned since {_clock(orphaned)}: the process working on it is gone. "
            f"Resume it: orchestrion resume {run.id}"
        )
    lease = run.lease
    assert lease is not None  # not orphaned: a live lease holds it
    return (
        f"working: owned by {lease.owner} since {_clock(lease.since)}, "
        f"lease renewed until {_clock(lease.until)}"
    )


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _run_footer(run: RunRecord) -> list[RenderableType]:
    """The error of a failed or stopped run, the output of a completed one, what it waits for."""
    parts: list[RenderableType] = []
    if run.status in (RunStatus.FAILED, RunStatus.STOPPED) and run.error:
        error = run.error if isinstance(run.error, dict) else {"message": run.error}
        parts.extend(error_lines(error, STATUS_STYLE[run.status.value], "error: "))
    if run.status is RunStatus.COMPLETED:
        parts.append(Text(f"output: {summarize(run.output, 200)}", style="green"))
    for item in run.pending:
        parts.append(pending_line(Interrupt.from_json(item)))
    return parts


def error_lines(error: dict[str, Any], style: str = "red", prefix: str = "") -> list[Text]:
    """A journaled error (`describe(exc)`): `Type: message`, then, for a tool's
    exception, where it was raised and its short traceback."""
    lines = [Text(f"{prefix}{error.get('type')}: {error.get('message')}", style=style)]
    if isinstance(error.get("where"), str):
        lines.append(Text(f"  at {error['where']}", style="dim"))
        trace = error.get("traceback")
        if isinstance(trace, list) and len(trace) > 1:
            lines.extend(Text(f"    {frame}", style="dim") for frame in trace)
    return lines


def _error_summary(error: dict[str, Any]) -> Text:
    where = f" (at {error['where']})" if isinstance(error.get("where"), str) else ""
    return Text(f"{error.get('type')}: {error.get('message')}{where}", style="red")


def tree_key(key: str, previous: str) -> Text:
    """The key with the path it shares with the previous row dimmed, so nesting reads as a tree."""
    shared = keys.shared(key, previous)
    return Text.assemble((shared.head, "dim"), shared.rest)


@dataclass(frozen=True, slots=True)
class _Step:
    """What the tree shows of one step: from the journal (`show`) or from events (live view)."""

    key: str
    kind: str
    status: str
    ms: float | None
    summary: Text

    @classmethod
    def of(cls, step: StepInfo) -> _Step:
        ended = step.status in (StepStatus.COMPLETED, StepStatus.FAILED) and step.ended_at
        ms = (step.ended_at - step.started_at) * 1000 if ended else None
        error = step.result if step.status is StepStatus.FAILED else None
        if isinstance(error, dict) and "message" in error:  # `describe(exc)` of the failure
            summary = _error_summary(error)
        else:
            summary = Text(summarize(step.result, 160))
        return cls(step.key, step.kind, step.status.value, ms, _with_attempts(summary, step))


def _with_attempts(summary: Text, step: StepInfo) -> Text:
    """The summary, after the failed attempts before it and the fallback that answered
    (first, so that a narrow terminal cuts the result rather than them)."""
    notes = []
    one = spent(step)
    if one is not None:  # a model step: what it spent, first
        u = one.usage
        cost = f", {dollars(u.cost)}" if u.cost else ""
        spending = Text(f"({u.input_tokens} in, {u.output_tokens} out{cost})  ", style="dim")
        summary = Text.assemble(spending, summary)
    record = read(step.kind, step.status, step.result, f"Step {step.key}")
    if isinstance(record, ModelResponded) and record.fallback is not None:
        notes.append(f"answered by fallback {record.fallback}")
    if step.attempts:
        where = f"A failed attempt of step {step.key}"
        failures = [read(step.kind, StepStatus.FAILED, a, where) for a in step.attempts]
        last = failures[-1]
        assert isinstance(last, AttemptFailed | StepRaised)  # what a failed step holds
        what = f"{last.error.get('type')}: {last.error.get('message')}"
        n = len(failures)
        notes.append(f"after {n} failed attempt{'s' if n > 1 else ''} (last: {what})")
        tripped = [a for a in failures if isinstance(a, AttemptFailed) and a.opened_circuit]
        if tripped:
            notes.append(f"attempt {tripped[0].attempt} opened the circuit of {tripped[0].model}")
    if not notes:
        return summary
    return Text.assemble(("[" + "; ".join(notes) + "]  ", "yellow"), summary)


_Role = Literal["leaf", "scope", "member", "call"]
"""Ranked: a segment that is a step in one key and a scope or member in another is the latter."""
_RANK: dict[_Role, int] = {"leaf": 0, "scope": 1, "member": 2, "call": 3}


@dataclass(eq=False, slots=True)
class _Node:
    part: keys.Part
    """The key level: a segment, or an agent's step (`turn-N/model`, `turn-N/tool/<name>#<id>`)."""
    role: _Role
    step: _Step | None = None
    children: dict[str, _Node] = field(default_factory=dict)
    """By key level (with its `turn-N/` for agent steps), in order of first appearance."""

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def turn(self) -> int | None:
        """The agent turn of a model request or a tool call."""
        return self.part.turn


@dataclass(frozen=True, slots=True)
class _Level:
    part: keys.Part
    role: _Role


def _levels(key: str) -> list[_Level]:
    """A step key as tree levels with their roles, read from the grammar every pattern
    nests: `<agent>/turn-N/model` and `<agent>/turn-N/tool/<name>#<id>` (see `keys.parse`).

    The run's root and a segment before an agent turn, right under a tool call (a
    delegation) or right under a scope are members; other inner segments are scopes
    (`ctx.run(..., key=...)`, e.g. `step-0`, `branch-1`, `hop-2`); the last is the step."""
    parts = keys.parse(key).parts
    levels: list[_Level] = []
    for i, part in enumerate(parts):
        role: _Role = "scope"
        if part.tool is not None:
            role = "call"
        elif part.turn is not None or i == len(parts) - 1:
            role = "leaf"  # the turn is no level of its own: its steps are labelled with it
        elif i == 0 or parts[i + 1].turn is not None or levels[-1].role in ("call", "scope"):
            role = "member"
        levels.append(_Level(part, role))
    return levels


def _build(steps: list[_Step]) -> _Node:
    top = _Node(keys.Part(text="", name=""), "scope")
    for step in steps:
        node = top
        for level in _levels(step.key):
            child = node.children.get(level.part.text)
            if child is None:
                child = node.children[level.part.text] = _Node(level.part, level.role)
            elif _RANK[level.role] > _RANK[child.role]:
                child.role = level.role
            node = child
        node.step = step
    return top


def step_tree(steps: list[_Step], fallback: str) -> RenderableType:
    """Steps as a tree: members (agents, patterns) hold their steps, and a delegation's or
    a scope's member nests under the tool call or scope that started it."""
    top = _build(steps)
    if not top.children:
        return Text("no steps yet", style="dim")
    only = next(iter(top.children.values()))
    if len(top.children) == 1 and only.role == "member":
        shown, label = _collapsed(only, None)
        tree = Tree(label, guide_style="dim")
    else:  # not one agent or pattern at the root: cannot come from `Runtime.run`, but show it
        shown, tree = top, Tree(Text(fallback, style="bold"), guide_style="dim")
    _add_children(tree, shown)
    return tree


def _add_children(branch: Tree, node: _Node) -> None:
    previous: int | None = None
    for child in node.children.values():
        shown, label = _collapsed(child, previous)
        _add_children(branch.add(label), shown)
        previous = child.turn


def _collapsed(node: _Node, previous_turn: int | None) -> tuple[_Node, Text]:
    """The node whose children go below, and the label: a scope holding just one member
    shares its line (`step-0/parse_resume`, as in the key), which keeps deep hierarchies narrow."""
    label = Text(no_wrap=True, overflow="ellipsis")
    if node.turn is not None:  # shown once for the steps of one turn, then blank
        turn = f"turn {node.turn} "
        label.append(turn if node.turn != previous_turn else " " * len(turn), style="dim")
    shown = node
    match node.role:
        case "member":
            label.append(node.name, style="bold")
        case "scope":
            label.append(node.name, style="dim")
            only = next(iter(node.children.values())) if len(node.children) == 1 else None
            if only is not None and only.role == "member" and only.step is None:
                shown = only
                label.append("/", style="dim").append(only.name, style="bold")
        case "call":
            tool, call = node.part.tool or "", node.part.call or ""
            label.append("tool ", style="dim").append(tool).append(f"#{call}", style="dim")
        case "leaf":
            if node.step is not None and node.step.kind != node.name:  # `step fetch`
                label.append(f"{node.step.kind} ", style="dim")
            label.append(node.name)
        case _:
            assert_never(node.role)
    if node.step is not None:
        _append_step(label, node, node.step)
    return shown, label


def _append_step(label: Text, node: _Node, step: _Step) -> None:
    if node.role == "call" and step.kind != "tool":
        label.append(f" {step.kind}", style="dim")
    label.append("  ").append(_styled(step.status))
    if step.ms is not None:
        label.append(f"  {step.ms:.1f} ms" if step.ms < 100 else f"  {step.ms:.0f} ms")
    if step.summary:
        label.append("  ").append(step.summary)


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
    """The steps of a run as they happen, as the same tree as `show`; render with rich's `Live`."""

    SHOWN = 30
    """The latest steps shown (with the members above them); older ones scroll away."""

    def __init__(self) -> None:
        self.steps: dict[str, _Step] = {}
        self.streaming = ""
        self.name = ""
        self.title = Text("starting…")
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        match event:
            case RunStarted(run_id=run_id, name=name, resumed=resumed):
                self.name = name
                self.title = Text.assemble(("run ", "bold"), run_id, " ", (name, "bold"))
                if resumed:
                    self.title.append(" (resumed)", style="dim")
            case StepStarted(key=key, kind=kind):
                self.steps[key] = _Step(key, kind, "started", None, Text())
                self.streaming = ""
            case StepCompleted(key=key, kind=kind, result=result, duration=seconds, replayed=again):
                status, ms = ("replayed", None) if again else ("completed", seconds * 1000)
                self.steps[key] = _Step(key, kind, status, ms, Text(summarize(result, 160)))
                self.streaming = ""
            case StepFailed(key=key, kind=kind, error=error):
                self.steps[key] = _Step(key, kind, "failed", None, Text(error, style="red"))
            case ModelDelta(text=text):
                self.streaming = (self.streaming + text)[-200:]
            case InterruptRequested(interrupt=interrupt):
                key = interrupt.key
                self.steps[key] = _Step(key, interrupt.kind, "pending", None, Text(interrupt.id))
            case LoopGuardTriggered(key=key, kind=kind, subject=subject, times=times, action=act):
                key = keys.child(key, "loop")  # a row under the step or member that looped
                what = Text(f"{kind} loop: {subject}, {times} times")
                self.steps[key] = _Step(key, "loop", act, None, what)
            case Transferred(key=key, target=target, reason=reason):
                key = keys.child(key, "handoff")  # under the agent's turn that handed over
                what = Text(f"to {target}" + (f": {reason}" if reason else ""))
                self.steps[key] = _Step(key, "handoff", "transferred", None, what)
            case Retrying(key=key, kind=kind, attempt=attempt, error=error, wait=wait):
                what = Text(f"attempt {attempt} failed ({error}); next in {wait:.1f} s")
                self.steps[key] = _Step(key, kind, "retrying", None, what)
                self.streaming = ""  # what the failed attempt streamed is void
            case FallbackUsed(key=key, failed=failed, used=used, error=error):
                key = keys.child(key, "fallback")  # a row under the step or member that gave up
                what = Text(f"{failed} -> {used}: {error}")
                self.steps[key] = _Step(key, "fallback", "fallback", None, what)
                self.streaming = ""
            case BreakerChanged(key=key, name=name, old=old, new=new):
                key = keys.child(key, "breaker")
                what = Text(f"circuit {name}: {old} -> {new}")
                self.steps[key] = _Step(key, "breaker", new, None, what)
            case RunFinished():
                self.streaming = ""
            case _:
                assert_never(event)

    def __rich__(self) -> RenderableType:
        latest = list(self.steps.values())[-self.SHOWN :]
        parts: list[RenderableType] = [self.title, step_tree(latest, fallback=self.name)]
        if self.streaming:
            parts.append(Text(self.streaming, style="dim italic"))
        return Group(*parts)


UNWRAPPED = 100_000
"""The width of output that is not a terminal: wide enough never to wrap a line."""


def console(stderr: bool = False) -> Console:
    """A console that prints text as given (no markup in data is ever read: print
    `Text`, or strings with `markup=False`). Output that is not a terminal (a pipe,
    a file, a CI log) is not wrapped at 80 columns, so ids, keys and commands stay
    on one line to be copied; COLUMNS still sets a width."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out.width = UNWRAPPED
    return out
