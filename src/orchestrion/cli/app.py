"""`orchestrion` commands. Exit codes: 0 completed, 1 failed, 2 usage error, 3 waiting
for a human, 4 stopped at a limit, 5 the run is busy in another process."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn

import typer
from rich.live import Live
from rich.text import Text

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.budget import Budget
from orchestrion.cli import common, graphs, prompts, usage, workers
from orchestrion.cli.follow import follow_run
from orchestrion.cli.render import (
    LiveView,
    console,
    error_lines,
    pending_line,
    run_tree,
    runs_table,
    summarize,
    timeline,
)
from orchestrion.cli.telemetry import configure_tracing
from orchestrion.cli.views import result_json, run_json, step_json, totals_json
from orchestrion.engine.costs import by_agent_and_model
from orchestrion.engine.interrupts import Approve, Interrupt, Reject
from orchestrion.engine.journal import RunStatus
from orchestrion.engine.result import RunResult, result_of
from orchestrion.engine.runtime import Runtime
from orchestrion.engine.store import DEFAULT_LEASE_TTL, DEFAULT_STORE_URL, open_store
from orchestrion.engine.targets import load_target
from orchestrion.errors import UserError
from orchestrion.graph.runs import run_flow
from orchestrion.redact import redact

EXIT = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.CANCELLED: 1,
    RunStatus.INTERRUPTED: 3,
    RunStatus.RUNNING: 1,
    RunStatus.STOPPED: 4,
    RunStatus.QUEUED: 0,
}
"""Exit codes: 0 completed (or queued for a worker), 1 failed, 2 usage error, 3 waiting for a human,
4 stopped at a limit (a budget or a loop guard; resumable), 5 busy: another
process holds the run (try again, or resume with --wait)."""

app = typer.Typer(
    name="orchestrion",
    help="Run, inspect, resume and fork durable agent runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _setup(
    log_format: common.LogFormatOption = None,
    log_level: common.LogLevelOption = None,
) -> None:
    """Run, inspect, resume and fork durable agent runs."""
    with common.errors():
        common.logs(log_format, log_level)
        configure_tracing()  # ORCHESTRION_INSTRUMENT=1: spans exported (see cli.telemetry)


app.command()(workers.submit)
app.command()(workers.worker)
app.command(name="bus")(workers.bus)
app.command(name="usage")(usage.usage)
app.command(name="graph")(graphs.graph)


def main() -> None:
    try:
        app()
    except Exception as exc:  # a bug, in a target or here: its traceback, without secrets
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


class _Session:
    """A runtime on one store; `follow` shows the live view while a run works."""

    def __init__(
        self, store: str, live: bool, lease_ttl: float, max_model_calls: int | None = None
    ) -> None:
        self.live = live
        self.view = LiveView()
        budget = None if max_model_calls is None else Budget(model_calls=max_model_calls or None)
        self.runtime = Runtime(
            store, sinks=[self.view] if live else [], budget=budget, lease_ttl=lease_ttl
        )

    async def follow(self, work: Callable[[Runtime], Awaitable[RunResult[Any]]]) -> RunResult[Any]:
        if not self.live:
            return await work(self.runtime)
        with Live(self.view, console=console(), refresh_per_second=8):
            return await work(self.runtime)


def _go(
    store: str,
    script: Callable[[_Session], Awaitable[RunResult[Any]]],
    *,
    live: bool,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    max_model_calls: int | None = None,
) -> RunResult[Any]:
    async def main() -> RunResult[Any]:
        session = _Session(store, live, lease_ttl, max_model_calls)
        try:
            return await script(session)
        finally:
            await session.runtime.close()

    with common.errors():
        return asyncio.run(main())


def _go_one(
    store: str,
    work: Callable[[Runtime], Awaitable[RunResult[Any]]],
    *,
    live: bool,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    max_model_calls: int | None = None,
) -> RunResult[Any]:
    return _go(
        store,
        lambda session: session.follow(work),
        live=live,
        lease_ttl=lease_ttl,
        max_model_calls=max_model_calls,
    )


async def _read(store: str, work: Callable[[Runtime], Awaitable[Any]]) -> Any:
    """`work` on a runtime over the store opened read-only (nothing created or changed)."""
    async with Runtime(open_store(store, read_only=True)) as runtime:
        return await work(runtime)


def _report(result: RunResult[Any], as_json: bool) -> NoReturn:
    if as_json:
        print(dumps_str(result_json(result)))
        raise typer.Exit(EXIT[result.status])
    # Everything from a run is printed as text, never read as markup; the lines
    # with an id or a command are never wrapped, so that they can be copied.
    out = console()
    style = {"completed": "green", "failed": "red"}.get(result.status, "yellow")
    status = (result.status.value, style)
    out.print(Text.assemble("run ", (result.run_id, "bold"), " ", status), soft_wrap=True)
    if result.status is RunStatus.COMPLETED:
        out.print(Text(summarize(result.value, 2000)))
    elif result.error:
        for line in error_lines(result.error):
            out.print(line)
    for key, value in result.partial.items():
        done = (("finished before the stop:", "dim"), f" {key}: {summarize(value, 300)}")
        out.print(Text.assemble(*done))
    if result.status is RunStatus.QUEUED:
        out.print(
            Text(f"A worker continues it; follow it with: orchestrion show {result.run_id}"),
            soft_wrap=True,
        )
        raise typer.Exit(EXIT[result.status])
    for interrupt in result.interrupts:
        out.print(pending_line(interrupt), soft_wrap=True)
    if result.interrupts:
        first = result.interrupts[0]
        flag = "--approve" if first.kind == "approval" else "--answer"
        value = "" if first.kind == "approval" else " JSON"
        out.print(
            Text(f"Answer with: orchestrion resume {result.run_id} {flag} {first.id}{value}"),
            soft_wrap=True,
        )
    raise typer.Exit(EXIT[result.status])


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="path/to/file.py:agent or package.module:agent")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Text, or a JSON object.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the new run.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="A key for this request: submitted again, it shows the run it started "
            "instead of starting another.",
        ),
    ] = None,
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
    lease_ttl: common.LeaseOption = DEFAULT_LEASE_TTL,
    max_model_calls: common.MaxModelCallsOption = None,
) -> None:
    """Start a run of TARGET and follow it until it completes, fails or waits for a human."""
    common.utf8(("--input", input), ("--run-id", run_id), ("--idempotency-key", idempotency_key))
    with common.errors():
        runnable = load_target(target)
    result = _go_one(
        store,
        lambda rt: rt.run(
            runnable,
            common.parse_input(input),
            run_id=run_id,
            target=target,
            idempotency_key=idempotency_key,
        ),
        live=_interactive() and not as_json,
        lease_ttl=lease_ttl,
        max_model_calls=max_model_calls,
    )
    _report(result, as_json)


@app.command()
def runs(
    store: common.StoreOption = DEFAULT_STORE_URL,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    as_json: common.JsonOption = False,
) -> None:
    """List runs, newest first."""
    with common.errors():
        wanted = _status(status)

        records = asyncio.run(_read(store, lambda rt: rt.list(status=wanted, limit=limit)))
    if as_json:
        print(dumps_str([run_json(r) for r in records]))
    else:
        console().print(runs_table(records))


def _status(status: str | None) -> RunStatus | None:
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        raise UserError(
            f"Unknown status {status!r}; use one of {[s.value for s in RunStatus]}."
        ) from None


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
    flat: Annotated[
        bool, typer.Option("--flat", help="One table of steps in journal order, not a tree.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Then print what the run does, live, until it stops working (through "
            "--bus where given, else by reading its journal).",
        ),
    ] = False,
    bus: common.BusOption = None,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph",
            help="Draw what flowed instead: who gave work to whom (delegations, handoffs, "
            "messages) and the tools called, with counts, tokens and cost (see --format).",
        ),
    ] = False,
    format: graphs.FormatOption = None,
    output: graphs.OutputOption = None,
) -> None:
    """A run as a tree of its agents and patterns, each step with its status, timing and result."""
    common.utf8(("RUN_ID", run_id))
    if (format or output) and not graph:
        common.fail("--format and --output draw a graph: add --graph.", common.USAGE_ERROR)
    if graph and (follow or flat or (as_json and format)):
        common.fail(
            "--graph draws the run as it stands: without --follow or --flat, and with "
            "either --json or --format.",
            common.USAGE_ERROR,
        )
    if follow:
        with common.errors():
            status = asyncio.run(follow_run(store, run_id, bus, as_json))
        raise typer.Exit(EXIT[status])

    if graph:
        with common.errors():
            drawn = asyncio.run(_read(store, lambda runtime: run_flow(runtime, run_id)))
            graphs.emit(drawn, "json" if as_json else format, output)
        return

    async def fetch(runtime: Runtime) -> tuple[Any, Any]:
        return await runtime.get(run_id), await runtime.history(run_id)

    with common.errors():
        record, steps = asyncio.run(_read(store, fetch))
    if as_json:
        data = run_json(record)
        data["steps"] = [step_json(s) for s in steps]
        data["by_agent"] = [
            totals_json(agent, model, t) for (agent, model), t in by_agent_and_model(steps).items()
        ]
        print(dumps_str(data))
    else:
        console().print(timeline(record, steps) if flat else run_tree(record, steps))


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to resume.")],
    approve: Annotated[
        list[str] | None, typer.Option("--approve", help="Approve interrupt ID.")
    ] = None,
    reject: Annotated[
        list[str] | None, typer.Option("--reject", help="Reject interrupt ID.")
    ] = None,
    reason: Annotated[
        list[str] | None, typer.Option("--reason", help="Reason for each --reject, in order.")
    ] = None,
    answer: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--answer", help="Answer interrupt ID with a JSON value (or text).", metavar="ID JSON"
        ),
    ] = None,
    answers_json: Annotated[
        str | None,
        typer.Option("--answers", help='Several answers as one JSON object: {"ID": answer, ...}.'),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="If another process holds the run, wait up to this many seconds for it "
            "to let go (or for its lease to end) instead of failing at once.",
        ),
    ] = 0.0,
    here: Annotated[
        bool,
        typer.Option("--here", help="Continue a run of a queue in this process, not on a worker."),
    ] = False,
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
    lease_ttl: common.LeaseOption = DEFAULT_LEASE_TTL,
    max_model_calls: common.MaxModelCallsOption = None,
) -> None:
    """Continue an interrupted, failed, stopped or crashed run, answering its interrupts.

    A run submitted to a queue goes back on it with the answers, for a worker to
    continue (unless --here). With no answers on a terminal, asks for each
    pending interrupt."""
    common.utf8(
        ("RUN_ID", run_id), ("--answers", answers_json), *(("--answer", a) for a in answer or ())
    )
    common.utf8(
        *(("--approve", a) for a in approve or ()), *(("--reject", a) for a in reject or ())
    )
    common.utf8(*(("--reason", a) for a in reason or ()))
    answers: dict[str, Any] = {i: Approve() for i in approve or []}
    reasons = list(reason or [])
    for i, interrupt_id in enumerate(reject or []):
        answers[interrupt_id] = Reject(reasons[i] if i < len(reasons) else "")
    if sys.argv.count("--answer") > 1:  # typer keeps only the last of a repeated pair option
        common.fail(
            "--answer takes one ID and answer; for several use --answers '{\"ID\": ...}'.",
            common.USAGE_ERROR,
        )
    if answer is not None:
        answers[answer[0]] = _json_or_text(answer[1])
    if answers_json is not None:
        answers.update(_object(answers_json, "--answers"))
    if not answers and _interactive():
        answers = _ask(run_id, store)

    async def go_on(runtime: Runtime) -> RunResult[Any]:
        if here or (await runtime.get(run_id)).queue is None:
            return await runtime.resume(run_id, answers, wait=wait)
        if max_model_calls is not None:
            raise UserError(
                f"Run {run_id} is continued by a worker, whose budget applies: start the "
                "workers with --max-model-calls, or continue it here with --here."
            )
        record = await runtime.requeue(run_id, answers, wait=wait)
        return result_of(record)

    result = _go_one(
        store,
        go_on,
        live=_interactive() and not as_json,
        lease_ttl=lease_ttl,
        max_model_calls=max_model_calls,
    )
    _report(result, as_json)


def _json_or_text(raw: str) -> JSON:
    try:
        value: JSON = loads(raw)
    except ValueError:
        return raw  # a bare word is a text answer
    return value


def _object(raw: str, flag: str) -> dict[str, JSON]:
    try:
        value = loads(raw)
    except ValueError as exc:
        common.fail(f"{flag} must be a JSON object: {exc}", common.USAGE_ERROR)
    if not isinstance(value, dict):
        common.fail(
            f"{flag} must be a JSON object mapping interrupt ids to answers.", common.USAGE_ERROR
        )
    return value


def _ask(run_id: str, store: str) -> dict[str, Any]:
    with common.errors():
        record = asyncio.run(_read(store, lambda rt: rt.get(run_id)))
    return prompts.ask_all([Interrupt.from_json(i) for i in record.pending])


@app.command()
def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    at: Annotated[str, typer.Option("--at", help="The step key to fork at (see `show --flat`).")],
    edit: Annotated[
        str | None, typer.Option("--edit", help="New result for that step (JSON or text).")
    ] = None,
    new_run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the new run.")] = None,
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
    lease_ttl: common.LeaseOption = DEFAULT_LEASE_TTL,
    max_model_calls: common.MaxModelCallsOption = None,
) -> None:
    """Start a new run from RUN_ID's journal before step AT (optionally edited) and continue it live."""
    common.utf8(("RUN_ID", run_id), ("--at", at), ("--edit", edit), ("--run-id", new_run_id))
    kwargs: dict[str, Any] = {"at": at, "new_run_id": new_run_id}
    if edit is not None:
        kwargs["edit"] = _json_or_text(edit)
    result = _go_one(
        store,
        lambda rt: rt.fork(run_id, **kwargs),
        live=_interactive() and not as_json,
        lease_ttl=lease_ttl,
        max_model_calls=max_model_calls,
    )
    _report(result, as_json)


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
) -> None:
    """Stop a run for good, with the runs it queued (a peer network's agents). A run
    working in another process is taken from it: that process stops at its next
    step, before any further write."""

    async def stop() -> Any:
        async with Runtime(store) as runtime:
            return await runtime.cancel(run_id)

    with common.errors():
        record = asyncio.run(stop())
    if as_json:
        print(dumps_str(run_json(record)))
    else:
        console().print(
            Text.assemble("run ", (record.id, "bold"), " ", record.status.value), soft_wrap=True
        )


def _resumer(
    run_id: str, answers: dict[str, Any]
) -> Callable[[Runtime], Awaitable[RunResult[Any]]]:
    return lambda runtime: runtime.resume(run_id, answers)


@app.command()
def demo(
    name: Annotated[str, typer.Argument(help="The demo to run.")] = "loan-team",
    store: common.StoreOption = DEFAULT_STORE_URL,
    max_model_calls: common.MaxModelCallsOption = None,
) -> None:
    """Run a demo offline on a deterministic stand-in model (or on ORCHESTRION_MODEL)."""
    from orchestrion.demos import DEMOS

    if name not in DEMOS:
        common.fail(f"Unknown demo {name!r}; demos: {sorted(DEMOS)}.", common.USAGE_ERROR)
    target = f"{DEMOS[name]}:agent"
    with common.errors():
        runnable = load_target(target)
    task: str = importlib.import_module(DEMOS[name]).TASK
    out = console()
    model = os.environ.get("ORCHESTRION_MODEL")
    out.print(Text.assemble("demo ", (name, "bold"), f": {task}"))
    out.print(
        Text(
            f"model: {model}"
            if model
            else "model: deterministic stand-in (offline); set ORCHESTRION_MODEL and a key for a real one"
        )
    )
    interactive = _interactive()

    async def script(session: _Session) -> RunResult[Any]:
        result = await session.follow(lambda rt: rt.run(runnable, task, target=target))
        while result.status is RunStatus.INTERRUPTED:
            if interactive:
                answers = prompts.ask_all(list(result.interrupts))
            else:
                out.print("Not on a terminal: auto-approving for the demo.")
                answers = {i.id: Approve() for i in result.interrupts}
            result = await session.follow(_resumer(result.run_id, answers))
        return result

    result = _go(store, script, live=interactive, max_model_calls=max_model_calls)
    show = f"orchestrion show {result.run_id} --store {store}"
    out.print(Text(f"Inspect it with: {show}"), soft_wrap=True)
    out.print(Text(f"Draw what flowed: {show} --graph -o {result.run_id}.svg"), soft_wrap=True)
    _report(result, False)
