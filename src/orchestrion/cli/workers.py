"""`orchestrion submit` and `orchestrion worker`: a queue of runs and the processes
that work on it (registered on the app by `cli.app`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from orchestrion._json import dumps_str
from orchestrion.budget import Budget
from orchestrion.bus.redis_mail import networks
from orchestrion.bus.redis_streams import DEFAULT_PREFIX, RedisEvents, streams
from orchestrion.cli import common
from orchestrion.cli.follow import networks_table, streams_table
from orchestrion.cli.render import console
from orchestrion.engine.queue import DEFAULT_QUEUE
from orchestrion.engine.runtime import Runtime
from orchestrion.engine.store import DEFAULT_LEASE_TTL, DEFAULT_STORE_URL
from orchestrion.engine.targets import load_object
from orchestrion.engine.worker import Worker
from orchestrion.errors import UserError

if TYPE_CHECKING:
    from orchestrion.engine.metrics import Metrics


def submit(
    target: Annotated[str, typer.Argument(help="path/to/file.py:agent or package.module:agent")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Text, or a JSON object.")
    ] = None,
    queue: Annotated[str, typer.Option("--queue", help="The queue to put the run on.")] = (
        DEFAULT_QUEUE
    ),
    priority: Annotated[
        int, typer.Option("--priority", help="Higher runs first (then oldest first).")
    ] = 0,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the new run.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="A key for this request: submitted again, it gives the run it queued.",
        ),
    ] = None,
    traceparent: Annotated[
        str | None,
        typer.Option(
            "--traceparent",
            envvar="TRACEPARENT",
            help="W3C trace context of the span the run's traces hang under "
            "(00-<trace id>-<span id>-<flags>).",
        ),
    ] = None,
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
) -> None:
    """Queue a run of TARGET for a worker (`orchestrion worker`) and print its id at once."""
    common.utf8(("--input", input), ("--run-id", run_id), ("--idempotency-key", idempotency_key))
    common.utf8(("--queue", queue))
    _shared(store)

    async def go() -> str:
        async with Runtime(store) as runtime:
            return await runtime.submit(
                target,
                common.parse_input(input),
                queue=queue,
                priority=priority,
                idempotency_key=idempotency_key,
                run_id=run_id,
                traceparent=traceparent or None,
            )

    with common.errors():
        submitted = asyncio.run(go())
    if as_json:
        print(dumps_str({"id": submitted, "status": "queued", "queue": queue}))
    else:
        print(submitted)


def worker(
    store: common.StoreOption = DEFAULT_STORE_URL,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="A queue to work on (repeat for several; default: default)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Runs worked on at once.")
    ] = 10,
    deps: Annotated[
        str | None,
        typer.Option(
            "--deps",
            help="module:attr or path.py:attr of the deps every run gets; a callable is "
            "called once, with no arguments, to make them.",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help="On SIGTERM, seconds runs get to reach a step boundary before they are "
            "stopped as a crash would stop them (keep it below your supervisor's kill "
            "timeout: Kubernetes' is 30 s). A second SIGTERM or Ctrl-C stops them at once.",
        ),
    ] = 20.0,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            min=0.05,
            help="Seconds between looks for runs whose worker died; also how long a run "
            "only waits before a full worker puts it back for another.",
        ),
    ] = 1.0,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            min=1,
            help="Fail a run taken this many times in a row by workers that died holding it.",
        ),
    ] = 5,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Exit once no run waits on its queues and none works in this worker (runs "
            "of a dead worker whose leases have not ended yet do not count as waiting).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="ORCHESTRION_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (http://HOST:PORT/metrics).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option("--metrics-host", help="The address the metrics are served on."),
    ] = "0.0.0.0",
    log_format: common.LogFormatOption = None,
    log_level: common.LogLevelOption = None,
    lease_ttl: common.LeaseOption = DEFAULT_LEASE_TTL,
    max_model_calls: common.MaxModelCallsOption = None,
    bus: common.BusOption = None,
) -> None:
    """Work on queued runs until SIGTERM or Ctrl-C (then drain: see --grace).

    Several workers (processes, machines) share a store's queues: each run is
    worked on by one at a time, and a run whose worker died is taken over once its
    lease ends. Works on PostgreSQL and, for processes of one machine, SQLite."""
    queues = queue or [DEFAULT_QUEUE]
    common.utf8(*(("--queue", q) for q in queues))
    _shared(store)
    budget = None if max_model_calls is None else Budget(model_calls=max_model_calls or None)
    with common.errors():
        if log_format or log_level or not logging.getLogger().handlers:
            common.logs(log_format or "text", log_level)  # a worker logs: text at INFO unless told
    # A worker holds many runs at once, each a few hundred objects alive for seconds:
    # the default thresholds scan the whole heap again and again (bench_workers.py:
    # half the time of 10,000 concurrent runs in the collector, a tenth with these).
    # Runs make little cyclic garbage: 30,000 runs on SQLite without one collection
    # of the older generations kept the process at 86-88 MB.
    gc.freeze()
    gc.set_threshold(50_000, 200, 100)
    with common.errors():
        given = None if deps is None else load_object(deps)
        made = given() if callable(given) else given

    metrics = None
    if metrics_port is not None:
        with common.errors():
            metrics = serve_metrics(metrics_host, metrics_port)

    async def go() -> Worker:
        events = None if bus is None else RedisEvents(bus)
        try:
            sinks = [events] if events else []
            async with Runtime(
                store, lease_ttl=lease_ttl, sinks=sinks, budget=budget, metrics=metrics
            ) as runtime:
                return await work_on_queues(runtime)
        finally:
            if events is not None:
                await events.aclose()

    async def work_on_queues(runtime: Runtime) -> Worker:
        work = Worker(
            runtime,
            queues=queues,
            concurrency=concurrency,
            deps=made,
            poll=poll,
            grace=grace,
            max_attempts=max_attempts,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, work.stop)
        logging.getLogger("orchestrion.worker").info(
            "worker %s on %s, queues %s, %d at once",
            runtime.owner,
            runtime.store.url,
            ", ".join(queues),
            concurrency,
        )
        await work.run(until_idle=until_idle)
        return work

    with common.errors():
        done = asyncio.run(go())
    console(stderr=True).print(
        Text(f"worker stopped: {done.finished} run(s) worked on"), soft_wrap=True
    )


def serve_metrics(host: str, port: int) -> Metrics:
    """prometheus_client's registry, served over HTTP on `host`:`port`, with
    orchestrion's metrics in it."""
    from prometheus_client import REGISTRY, start_http_server

    from orchestrion.engine.metrics import Metrics

    try:
        server, _ = start_http_server(port, host, registry=REGISTRY)
    except OSError as exc:
        raise UserError(
            f"Cannot serve metrics on {host}:{port}: {exc.strerror or exc}. Pick another "
            "--metrics-port (or stop what listens there)."
        ) from None
    port = server.server_port  # the one bound, for --metrics-port 0
    logging.getLogger("orchestrion.worker").info("metrics on http://%s:%d/metrics", host, port)
    return Metrics.of(REGISTRY)


def _shared(store: str) -> None:
    if store.startswith("memory://"):
        common.fail(
            "A queue in memory:// lives and dies with one process: give workers a store "
            "they share (--store sqlite:///runs.db, or postgresql://...).",
            common.USAGE_ERROR,
        )


def bus(
    bus: common.BusOption = None,
    prefix: Annotated[str, typer.Option("--prefix", help="The streams' key prefix.")] = (
        DEFAULT_PREFIX
    ),
    as_json: common.JsonOption = False,
) -> None:
    """List the bus's streams (their length, and per consumer group the messages
    pending, delivered and not acknowledged, and lagging, not yet delivered) and the
    peer networks with mailboxes on it (messages posted and in flight, outcome)."""
    if bus is None:
        common.fail(
            "Give the bus: --bus redis://host:6379/0 (or ORCHESTRION_BUS).", common.USAGE_ERROR
        )
    with common.errors():
        found = asyncio.run(streams(bus, prefix))
        nets = asyncio.run(networks(bus, prefix))
    if as_json:
        print(dumps_str({"streams": found, "networks": nets}))
    else:
        console().print(streams_table(found))
        if nets:
            console().print(networks_table(nets))
