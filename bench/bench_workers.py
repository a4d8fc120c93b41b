"""Workers and many concurrent runs: a queue drained by `orchestrion worker`
processes, the takeover of a killed worker's runs, and 10,000 runs in one process.

1. drain: RUNS queued runs (an agent making 3 tool calls that each sleep 10 ms,
   then answering; a `FunctionModel`, see bench/worker_target.py) drained by 1, 2
   and 4 `orchestrion worker --until-idle --concurrency C` processes, on
   PostgreSQL and on a SQLite file. Wall time is from just before the first
   worker is spawned to the last one reaped (`os.wait4`: blocking, no polling),
   so it includes each worker's start (an idle worker's start and exit is shown
   apart). Also: when the first and the last worker logged that it was ready,
   when the last run completed (its `updated_at`), and the drain between the
   first ready and the last done; the CPU seconds of the workers (their rusage),
   of every PostgreSQL server process (/proc, reaped backends included) and of
   the whole machine (/proc/stat; "other CPU" is what neither the workers nor
   PostgreSQL used: another process's load). Afterwards every run is checked:
   `completed`, fencing token 1 (claimed once), each tool call run once (counted
   by the tool in every worker, written at exit), each journal step once.
2. recovery: a worker whose tool blocks holds RUNS runs under a 2 s lease; it is
   SIGKILLed and a second worker (--poll 0.5, same lease ttl) started at once.
   Reported: from the kill to the second worker's first tool call on those runs,
   that minus the lease ttl, and from the lease's real end (read from the store
   after the kill) to that call. The bench waits for the kill's precondition and
   for completion by polling (a JSONL log every 20 ms, the store every 100 ms);
   the times reported come from the tool's own timestamps, not from the polls.
3. in-process: 10,000 concurrent runs (3 tool calls of 50 ms, then an answer)
   gathered on `Runtime("memory://")` and on a SQLite file, against two
   hand-written asyncio loops per run: the floor, which only sleeps where the tools
   would, and an agent loop (messages and parsed arguments, as in bench_core.py).
   Each variant runs in a fresh child
   process (so peak RSS, GC state and imports do not leak between rows), after a
   warm-up of 200 runs. Time in the garbage collector is measured with
   `gc.callbacks`; GC variants: default, `gc.freeze()` after setup, thresholds
   raised, both, and GC off (a bound on what GC costs). Memory per run is shown
   two ways: peak RSS growth (VmHWM after the gather minus VmRSS before it,
   VmHWM reset first) and tracemalloc's peak (a separate pass, tracemalloc
   slows the run), each divided by the number of runs; plus what stays after
   the runs finished (the memory store keeps every journal).
4. profile of 3 on memory://: cProfile (top by tottime and by cumulative, and
   tottime by file) with GC on and with GC off (a collection's time is charged to
   whatever allocated when it started), and tracemalloc's top allocation sites
   (file:line, with the line) in a snapshot near the peak.

Before each measurement the bench waits (untimed, up to --quiet-wait seconds) for
the machine to be idle; the "other CPU" columns show any load that came anyway.

    .venv/bin/python bench/bench_workers.py              # everything, ~30 minutes
    .venv/bin/python bench/bench_workers.py --quick      # a small smoke version, ~1 minute
    .venv/bin/python bench/bench_workers.py --only drain --stores postgres --repeat 1

To measure one revision while src/ is being edited, run it from a copy of its src
(the workers and child processes inherit PYTHONPATH; the first line printed says
which orchestrion was imported):

    git archive HEAD src | tar -x -C /tmp/snap && PYTHONPATH=/tmp/snap/src \
        .venv/bin/python bench/bench_workers.py
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import linecache
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import harness
from harness import POSTGRES_URL, drop_schema

HERE = Path(__file__).resolve().parent
TARGET = f"{HERE / 'worker_target.py'}:agent"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- stores ------------------------------------------------------------------------


class FreshStore:
    """A new, empty store: a PostgreSQL schema (dropped on exit) or a SQLite file."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.schema = f"o_bw_{uuid.uuid4().hex[:8]}"
        if kind == "postgres":
            self.url = f"{POSTGRES_URL}?schema={self.schema}"
        else:
            self.url = f"sqlite:///{tmp / (self.schema + '.db')}"

    def __enter__(self) -> FreshStore:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "postgres":
            asyncio.run(drop_schema(self.schema))


def submit_all(url: str, count: int, chunk: int = 200) -> list[str]:
    """Queue `count` runs of TARGET (outside any timed region), `chunk` at a time."""
    from orchestrion import Runtime

    async def go() -> list[str]:
        ids: list[str] = []
        async with Runtime(url) as runtime:
            for start in range(0, count, chunk):
                ids += await asyncio.gather(
                    *(
                        runtime.submit(TARGET, f"job {i}")
                        for i in range(start, min(count, start + chunk))
                    )
                )
        return ids

    return asyncio.run(go())


def read_store(
    url: str, ids: Sequence[str], journals: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run records of `ids` and (with `journals`) their journals, read only."""
    from orchestrion.engine.store import open_store

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        store = open_store(url, read_only=True)
        try:
            runs = {r.id: r for r in await store.list_runs(limit=len(ids) + 100)}
            loaded: dict[str, Any] = {}
            if journals:
                for start in range(0, len(ids), 100):
                    part = ids[start : start + 100]
                    for run_id, entries in zip(
                        part, await asyncio.gather(*(store.load(i) for i in part)), strict=True
                    ):
                        loaded[run_id] = entries
            return runs, loaded
        finally:
            await store.close()

    return asyncio.run(go())


# -- processes and CPU ---------------------------------------------------------------


def worker_cmd(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrion", "worker", "--store", url, *args]


def spawn(cmd: list[str], env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=err
        )


def reap(proc: subprocess.Popen[bytes]) -> float:
    """Wait for `proc` (blocking `wait4`); its CPU seconds (user + system)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def ready_at(stderr: Path) -> float | None:
    """When the worker logged `worker ... on ...` (its logging timestamp, ms)."""
    for line in stderr.read_text(errors="replace").splitlines():
        if " orchestrion.worker worker " in line:
            stamp = line[:23]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def postgres_cpu() -> float:
    """CPU seconds of every `postgres` process, its reaped children (backends) included."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name != "postgres":
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores, since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


QUIET_WAIT = [120.0]
"""Seconds `quiet()` waits at most (set from --quiet-wait)."""


def quiet(window: float = 0.5, busy_below: float = 0.1) -> None:
    """Wait (untimed) until the machine is idle: two `window`s in a row with less than
    `busy_below` of its CPU busy, so that another process's load (a test suite, say)
    does not land in a measurement. Warns after QUIET_WAIT seconds and goes on."""
    deadline, calm = time.monotonic() + QUIET_WAIT[0], 0
    while calm < 2:
        b0, t0 = machine_cpu()
        time.sleep(window)
        b1, t1 = machine_cpu()
        calm = calm + 1 if (b1 - b0) / max(t1 - t0, 1e-9) < busy_below else 0
        if time.monotonic() > deadline:
            print(f"  !! the machine stayed busy for {QUIET_WAIT[0]:g} s: measuring anyway")
            return


# -- 1. drain ------------------------------------------------------------------------


@dataclass
class Drain:
    store: str
    workers: int
    wall: float
    first_ready: float
    ready: float
    last_done: float
    worker_cpu: float
    postgres_cpu: float
    busy: float
    """Share of the machine's CPU (all cores) busy during the drain."""
    other_cpu: float
    """CPU seconds the machine spent beyond the workers and PostgreSQL (other processes)."""
    shares: list[int]
    """Runs done by each worker."""
    problems: list[str] = field(default_factory=list)


def drain(kind: str, workers: int, args: argparse.Namespace, tmp: Path) -> Drain:
    with FreshStore(kind, tmp) as fresh:
        ids = submit_all(fresh.url, args.runs)
        counts = tmp / f"counts-{fresh.schema}"
        counts.mkdir()
        env = {
            "BW_SLEEP": str(args.tool_sleep),
            "BW_STEPS": str(args.steps),
            "BW_COUNTS": str(counts),
        }
        cmd = worker_cmd(fresh.url, "--concurrency", str(args.concurrency), "--until-idle")
        errs = [tmp / f"{fresh.schema}-{w}.err" for w in range(workers)]
        quiet()
        pg0, (busy0, total0) = postgres_cpu(), machine_cpu()
        epoch0, t0 = time.time(), time.perf_counter()
        procs = [spawn(cmd, env, err) for err in errs]
        cpu = sum(reap(p) for p in procs)
        wall = time.perf_counter() - t0
        busy1, total1 = machine_cpu()
        time.sleep(0.3)  # the server reaps the workers' backends (not timed)
        pg = postgres_cpu() - pg0
        busy = (busy1 - busy0) / (total1 - total0)
        other = busy1 - busy0 - cpu - pg
        result = Drain(kind, workers, wall, 0.0, 0.0, 0.0, cpu, pg, busy, other, [])
        for p, err in zip(procs, errs, strict=True):
            if p.returncode != 0:
                result.problems.append(f"worker exited {p.returncode}: {err.read_text()[-2000:]}")
        readies = [r for r in map(ready_at, errs) if r is not None]
        result.first_ready = min(readies) - epoch0 if readies else float("nan")
        result.ready = max(readies) - epoch0 if readies else float("nan")
        runs, journals = read_store(fresh.url, ids, journals=True)
        done = [runs[i].updated_at for i in ids if i in runs]
        result.last_done = max(done) - epoch0 if done else float("nan")
        result.problems += check_drain(ids, runs, journals, counts, args.steps)
        per_worker = [json.loads(f.read_text()) for f in counts.glob("*.json")]
        result.shares = sorted(
            (len({k.rsplit("/", 1)[0] for k in c}) for c in per_worker), reverse=True
        )
        return result


def check_drain(
    ids: Sequence[str], runs: dict[str, Any], journals: dict[str, Any], counts: Path, steps: int
) -> list[str]:
    """Every run completed exactly once: status, one claim, one execution per tool
    call (across all workers), one journal entry per step."""
    from orchestrion.engine.journal import RunStatus

    problems: list[str] = []
    statuses = Counter(runs[i].status.value if i in runs else "missing" for i in ids)
    if statuses != {"completed": len(ids)}:
        problems.append(f"statuses: {dict(statuses)}")
    tokens = Counter(runs[i].token for i in ids if i in runs)
    if set(tokens) != {1}:
        problems.append(f"claims per run (fencing tokens): {dict(tokens)}")
    if any(runs[i].lease is not None for i in ids if i in runs):
        problems.append("some completed runs still hold a lease")
    if any(
        runs[i].output != "done"
        for i in ids
        if runs.get(i) and runs[i].status is RunStatus.COMPLETED
    ):
        problems.append("some outputs are not 'done'")
    executed: Counter[str] = Counter()
    for f in counts.glob("*.json"):
        executed.update(json.loads(f.read_text()))
    expected = {f"{i}/{n}" for i in ids for n in range(1, steps + 1)}
    if set(executed) != expected or set(executed.values()) != {1}:
        twice = sum(1 for v in executed.values() if v > 1)
        problems.append(
            f"tool executions: {len(expected - set(executed))} missing, {twice} repeated, "
            f"{len(set(executed) - expected)} unexpected"
        )
    for run_id in ids:
        entries = journals.get(run_id, [])
        completed = Counter(e.key for e in entries if e.status.value == "completed")
        kinds = Counter(e.kind for e in entries if e.status.value == "completed")
        if any(v > 1 for v in completed.values()) or kinds != {"model": steps + 1, "tool": steps}:
            problems.append(
                f"journal of {run_id}: {dict(kinds)}, repeated: {completed.most_common(1)}"
            )
            break
    return problems


def idle_start(kind: str, tmp: Path) -> float:
    """Seconds a worker takes to start and exit on an empty queue (the fixed cost in wall)."""
    with FreshStore(kind, tmp) as fresh:
        submit_all(fresh.url, 0)
        spawn(worker_cmd(fresh.url, "--until-idle"), {}, tmp / "idle.err").wait()  # schema made
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            spawn(worker_cmd(fresh.url, "--until-idle"), {}, tmp / "idle.err").wait()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def run_drains(args: argparse.Namespace, tmp: Path) -> None:
    print(
        f"\n== 1. drain: {args.runs} queued runs, {args.steps} tool calls of "
        f"{args.tool_sleep * 1000:g} ms each then an answer; "
        f"`orchestrion worker --until-idle --concurrency {args.concurrency}`; "
        f"median of {args.repeat} (spread in brackets); {os.cpu_count()} cores\n",
        flush=True,
    )
    for kind in args.stores:
        startup = idle_start(kind, tmp)
        rows: dict[int, list[Drain]] = {}
        for w in args.workers:
            rows[w] = [drain(kind, w, args, tmp) for _ in range(args.repeat)]
            for r in rows[w]:
                for problem in r.problems:
                    print(f"  !! {kind} {w} worker(s): {problem}")
        base = statistics.median(r.wall for r in rows[args.workers[0]])
        drain_base = statistics.median(r.last_done - r.first_ready for r in rows[args.workers[0]])
        header = (
            "store", "workers", "wall s", "runs/s", f"x {args.workers[0]}w", "ready s",
            "last done s", "drain s", f"x {args.workers[0]}w", "worker CPU s", "pg CPU s",
            "machine busy", "other CPU s", "runs per worker", "check",
        )  # fmt: skip
        body = []
        for w, rs in rows.items():
            wall = statistics.median(r.wall for r in rs)
            med = min(rs, key=lambda r: abs(r.wall - wall))  # the median run's other numbers
            drained = statistics.median(r.last_done - r.first_ready for r in rs)
            body.append(
                (
                    kind,
                    str(w),
                    f"{wall:.2f} [{min(r.wall for r in rs):.2f}-{max(r.wall for r in rs):.2f}]",
                    f"{args.runs / wall:.0f}",
                    f"{base / wall:.2f}",
                    f"{med.first_ready:.2f}/{med.ready:.2f}",
                    f"{med.last_done:.2f}",
                    f"{drained:.2f}",
                    f"{drain_base / drained:.2f}",
                    f"{med.worker_cpu:.2f}",
                    f"{med.postgres_cpu:.2f}",
                    f"{med.busy:.0%}",
                    f"{med.other_cpu:.2f}",
                    "/".join(map(str, med.shares)),
                    "ok" if not any(r.problems for r in rs) else "FAILED",
                )
            )
        print_table(header, body)
        print(
            f"  ready: when the first/last worker logged it was ready; last done: the last run's "
            f"updated_at; drain: last done - first ready (all from the spawn of the workers);\n"
            f"  other CPU: the machine's busy CPU seconds minus the workers' and PostgreSQL's "
            f"(another process's load)\n"
            f"  (an idle worker's start and exit on {kind}: {startup:.2f} s)\n",
            flush=True,
        )


# -- 2. recovery ---------------------------------------------------------------------


def wait_for(done: Callable[[], bool], what: str, timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"never {what} within {timeout} s")
        time.sleep(interval)


def recovery(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from orchestrion.engine.journal import RunStatus

    quiet()
    with FreshStore(kind, tmp) as fresh:
        ids = submit_all(fresh.url, args.recovery_runs)
        log = tmp / f"{fresh.schema}-tools.jsonl"
        env = {"BW_SLEEP": str(args.tool_sleep), "BW_STEPS": str(args.steps), "BW_LOG": str(log)}
        ttl = str(args.lease_ttl)
        lines = lambda: log.read_text().splitlines() if log.exists() else []  # noqa: E731
        doomed = spawn(
            worker_cmd(fresh.url, "--concurrency", str(len(ids)), "--lease-ttl", ttl),
            {**env, "BW_BLOCK": "1"},
            tmp / f"{fresh.schema}-doomed.err",
        )
        try:
            wait_for(lambda: len(lines()) >= len(ids), "blocked in the tool", 60, 0.02)
            time.sleep(args.lease_ttl / 2)  # let the heartbeat renew once or so: a lease mid-way
        except BaseException:
            doomed.kill()
            raise
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.time()
        doomed.wait()
        err = tmp / f"{fresh.schema}-survivor.err"
        survivor = spawn(
            worker_cmd(fresh.url, "--lease-ttl", ttl, "--poll", str(args.poll)), env, err
        )
        try:
            runs, _ = read_store(fresh.url, ids, journals=False)
            lease_end = max(runs[i].lease.until for i in ids if runs[i].lease is not None)
            wait_for(
                lambda: all(
                    r.status is RunStatus.COMPLETED
                    for r in read_store(fresh.url, ids, journals=False)[0].values()
                ),
                "finished the killed worker's runs",
                60,
                0.1,
            )
        finally:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(timeout=30)
        runs, _ = read_store(fresh.url, ids, journals=False)
        assert all(runs[i].token == 2 for i in ids), {runs[i].token for i in ids}
        calls = [json.loads(line) for line in lines()]
        taken = {}
        for c in calls:
            if c["pid"] == survivor.pid and c["run"] not in taken:
                taken[c["run"]] = c["at"]
        assert set(taken) == set(ids), "a run was not taken over"
        ready = ready_at(err)
        return {
            "kill -> survivor ready": (ready - killed_at) if ready else float("nan"),
            "kill -> lease end (store)": lease_end - killed_at,
            "kill -> first tool call": min(taken.values()) - killed_at,
            "  minus lease ttl": min(taken.values()) - killed_at - args.lease_ttl,
            "lease end -> first tool call": min(taken.values()) - lease_end,
            "lease end -> last run's tool call": max(taken.values()) - lease_end,
        }


def run_recovery(args: argparse.Namespace, tmp: Path) -> None:
    print(
        f"\n== 2. recovery: {args.recovery_runs} runs blocked in their first tool call in a "
        f"worker with --lease-ttl {args.lease_ttl:g}; SIGKILL; a second worker "
        f"(--poll {args.poll:g} --lease-ttl {args.lease_ttl:g}) started at once\n",
        flush=True,
    )
    results = {
        kind: [recovery(kind, args, tmp) for _ in range(args.repeat)] for kind in args.stores
    }
    header = ("seconds", *(f"{k} (median [min-max] of {args.repeat})" for k in results))
    body = []
    for name in next(iter(results.values()))[0]:
        cells = [name]
        for rs in results.values():
            values = [r[name] for r in rs]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]")
        body.append(tuple(cells))
    print_table(header, body)


# -- 3. in-process: the child ----------------------------------------------------------


def vm_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


async def bare_sleeps(sleep: float, steps: int) -> str:
    """The floor: a hand-written loop that only sleeps where the tools would."""
    for _ in range(steps):
        await asyncio.sleep(sleep)
    return "done"


async def bare_run(sleep: float, steps: int) -> str:
    """The same work as a hand-written agent loop (messages, parsed arguments, as in
    bench/bench_core.py): what any framework must do at least."""
    from orchestrion.messages import ModelResponse, ToolCall, ToolResult

    messages: list[object] = ["go"]
    for n in range(steps + 1):
        response = (
            ModelResponse(tool_calls=(ToolCall(f"call_{n + 1}", "lookup", f'{{"n": {n + 1}}}'),))
            if n < steps
            else ModelResponse(text="done")
        )
        messages.append(response)
        for c in response.tool_calls:
            args = json.loads(c.arguments)
            await asyncio.sleep(sleep)
            messages.append(ToolResult(c.id, c.name, f"fact {args['n']}"))
    last = messages[-1]
    assert isinstance(last, ModelResponse) and last.text
    return last.text


class GCTimer:
    """Time spent in the garbage collector, through `gc.callbacks`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def apply_gc(mode: str, threshold: Sequence[int]) -> None:
    """After setup: `default`, `freeze` (setup's objects out of every collection),
    `threshold` (fewer collections), `freeze+threshold`, or `off` (a bound)."""
    gc.collect()
    if "freeze" in mode:
        gc.freeze()
    if "threshold" in mode:
        gc.set_threshold(*threshold)
    if mode == "off":
        gc.disable()


async def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One in-process variant in this (fresh) process: `spec` says which and how."""
    from worker_target import make_agent

    from orchestrion import Runtime

    kind, mode, runs = spec["kind"], spec["mode"], spec["runs"]
    sleep, steps = spec["sleep"], spec["steps"]
    runtime = None
    if kind in BARE:

        def one() -> Any:
            return BARE[kind](sleep, steps)

    else:
        url = (
            "memory://"
            if kind == "memory"
            else f"sqlite:///{spec['tmp']}/inproc-{uuid.uuid4().hex[:8]}.db"
        )
        runtime = Runtime(url)
        agent = make_agent(sleep, steps, keep_requests=spec.get("keep_requests", False))

        def one() -> Any:
            return runtime.run(agent, "go")

    async def batch(n: int) -> list[Any]:
        return await asyncio.gather(*(one() for _ in range(n)))

    def check(results: list[Any]) -> None:
        values = [r if isinstance(r, str) else r.value for r in results]
        assert values == ["done"] * len(results), Counter(map(str, values)).most_common(3)

    check(await batch(spec["warmup"]))
    out: dict[str, Any] = {}
    try:
        if mode == "time":
            apply_gc(spec["gc"], spec["threshold"])
            rss0 = vm_kb("VmRSS")
            try:
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
                peak_source = "VmHWM"
            except OSError:
                peak_source = "VmHWM (not reset: includes setup)"
            busy0, cpu0 = machine_cpu()[0], time.process_time()
            with GCTimer() as timer:
                t0 = time.perf_counter()
                results = await batch(runs)
                wall = time.perf_counter() - t0
            own, busy = time.process_time() - cpu0, machine_cpu()[0] - busy0
            hwm = vm_kb("VmHWM")
            check(results)
            out = {
                "wall": wall,
                "gc_s": timer.seconds,
                "collections": timer.collections,
                "rss_kb_per_run": (hwm - rss0) / runs,
                "cpu": own,
                "other_cpu": busy - own,
                "peak_source": peak_source,
            }
        elif mode == "memory":
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            results = await batch(runs)
            peak = tracemalloc.get_traced_memory()[1]
            check(results)
            del results
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            out = {
                "peak_kb_per_run": (peak - base) / runs / 1024,
                "kept_kb_per_run": (kept - base) / runs / 1024,
            }
        elif mode == "profile":
            apply_gc(spec["gc"], ())
            profile = cProfile.Profile()
            with GCTimer() as timer:
                t0 = time.perf_counter()
                profile.enable()
                results = await batch(runs)
                profile.disable()
                wall = time.perf_counter() - t0
            check(results)
            report = profile_report(profile, spec["top"], runs, spec["sorts"])
            out = {"wall": wall, "gc_s": timer.seconds, "report": report}
        elif mode == "alloc":
            gc.collect()
            out = await alloc_report(batch, check, runs, spec["top"])
    finally:
        if runtime is not None:
            await runtime.close()
    return out


def short(path: str) -> str:
    for marker in ("/src/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_report(profile: cProfile.Profile, top: int, runs: int, sorts: Sequence[str]) -> str:
    """The top functions by each of `sorts` (tottime, cumulative), and tottime by file.
    A coroutine's ncalls counts each time it was resumed, not once per call."""
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = stats.stats  # type: ignore[attr-defined]
    lines = [f"total profiled time {total:.2f} s ({total / runs * 1e6:.0f} us/run)"]
    for title in sorts:
        index = {"tottime": 2, "cumulative": 3}[title]
        lines.append(f"\ntop {top} by {title}:")
        lines.append(f"  {'tottime s':>9} {'cumtime s':>9} {'% tot':>6} {'ncalls':>9}  function")
        ordered = sorted(rows.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
        for (file, line, func), (_, nc, tt, ct, _) in ordered:
            where = f"{short(file)}:{line}({func})" if line else func
            lines.append(f"  {tt:9.3f} {ct:9.3f} {tt / total:6.1%} {nc:9d}  {where}")
    by_file: Counter[str] = Counter()
    for (file, _, _), (_, _, tt, _, _) in rows.items():
        by_file[short(file) if file != "~" else "builtins (C)"] += tt
    lines.append("\ntottime by file (top 12):")
    for file, tt in by_file.most_common(12):
        lines.append(f"  {tt:9.3f} {tt / total:6.1%}  {file}")
    return "\n".join(lines)


async def alloc_report(batch: Any, check: Any, runs: int, top: int) -> dict[str, Any]:
    """tracemalloc's top allocation sites in a snapshot taken near the peak (a watcher
    task looks at the traced size every 50 ms and snapshots it when it grew 3%)."""
    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    best: list[Any] = [None, 0]

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.05)
            current = tracemalloc.get_traced_memory()[0]
            if current > best[1] * 1.03:
                best[0], best[1] = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]

    watcher = asyncio.create_task(watch())
    results = await batch(runs)
    watcher.cancel()
    peak = tracemalloc.get_traced_memory()[1]
    check(results)
    snapshot = best[0]
    tracemalloc.stop()
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    blocks = sum(s.count for s in snapshot.statistics("filename"))
    lines = [
        f"snapshot at {(best[1] - base) / 2**20:.1f} MiB above the start "
        f"(tracemalloc's peak: {(peak - base) / 2**20:.1f} MiB); per run = size / {runs}; "
        f"{blocks / runs:.0f} live blocks per run in the snapshot",
        f"\ntop {top} allocation sites (file:line):",
        f"  {'KiB':>9} {'B/run':>7} {'blocks':>9}  site",
    ]
    for s in snapshot.statistics("lineno")[:top]:
        frame = s.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:70]
        lines.append(
            f"  {s.size / 1024:9.0f} {s.size / runs:7.0f} {s.count:9d}  "
            f"{short(frame.filename)}:{frame.lineno}  {code}"
        )
    lines.append("\nby file:")
    for s in snapshot.statistics("filename")[:10]:
        lines.append(
            f"  {s.size / 1024:9.0f} {s.size / runs:7.0f} {s.count:9d}  {short(s.traceback[0].filename)}"
        )
    return {"report": "\n".join(lines)}


# -- 3. in-process: the parent -------------------------------------------------------------


BARE = {"floor": bare_sleeps, "loop": bare_run}
NAMES = {"floor": "bare asyncio: sleeps only", "loop": "bare asyncio: agent loop"}


def in_child(spec: dict[str, Any]) -> dict[str, Any]:
    quiet()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def run_inproc(args: argparse.Namespace, tmp: Path) -> None:
    common = {
        "runs": args.inproc_runs,
        "sleep": args.inproc_sleep,
        "steps": args.steps,
        "warmup": args.warmup,
        "tmp": str(tmp),
        "threshold": args.gc_threshold,
    }
    print(
        f"\n== 3. in-process: {args.inproc_runs} concurrent runs (asyncio.gather), "
        f"{args.steps} tool calls of {args.inproc_sleep * 1000:g} ms then an answer; "
        f"a fresh process per row, warm-up {args.warmup} runs; median of {args.repeat}; "
        f"gc thresholds when raised: {tuple(args.gc_threshold)}\n",
        flush=True,
    )
    variants = [("floor", "default"), ("loop", "default")]
    variants += [(k, g) for k in args.inproc_stores for g in args.gc_modes]
    timed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for kind, mode in variants:
        timed[kind, mode] = [
            in_child({**common, "kind": kind, "mode": "time", "gc": mode})
            for _ in range(args.repeat)
        ]
    memory = {
        NAMES.get(k, f"orchestrion {k}"): in_child({**common, "kind": k, "mode": "memory"})
        for k in ["floor", "loop", *args.inproc_stores]
    }
    if "memory" in args.inproc_stores:
        memory["orchestrion memory, FunctionModel keeping its requests"] = in_child(
            {**common, "kind": "memory", "mode": "memory", "keep_requests": True}
        )
    floor = statistics.median(r["wall"] for r in timed["floor", "default"])
    loop = statistics.median(r["wall"] for r in timed["loop", "default"])
    header = (
        "variant", "gc", "wall s", "x floor", "x loop", "GC s", "GC % of wall", "collections g0/g1/g2",
        "RSS peak growth KB/run", "CPU s", "other CPU s",
    )  # fmt: skip
    body = []
    for (kind, mode), rs in timed.items():
        wall = statistics.median(r["wall"] for r in rs)
        med = min(rs, key=lambda r: abs(r["wall"] - wall))
        body.append(
            (
                NAMES.get(kind, f"orchestrion {kind}"),
                mode,
                f"{wall:.2f} [{min(r['wall'] for r in rs):.2f}-{max(r['wall'] for r in rs):.2f}]",
                f"{wall / floor:.1f}",
                f"{wall / loop:.1f}",
                f"{med['gc_s']:.2f}",
                f"{med['gc_s'] / med['wall']:.0%}",
                "/".join(map(str, med["collections"])),
                f"{med['rss_kb_per_run']:.1f}",
                f"{med['cpu']:.2f}",
                f"{med['other_cpu']:.2f}",
            )
        )
    print_table(header, body)
    print(
        f"  (RSS: {next(iter(timed.values()))[0]['peak_source']} after the gather minus VmRSS "
        "before it; CPU: the process's; other CPU: the rest of the machine's, same interval;\n"
        "  floor: the sleeps alone; loop: a hand-written agent loop with messages, as in "
        "bench_core.py)"
    )
    print("\nmemory per run, tracemalloc (a separate pass: Python allocations only)\n")
    print_table(
        ("variant", "peak KB/run", "kept after the runs KB/run"),
        [
            (k, f"{m['peak_kb_per_run']:.1f}", f"{m['kept_kb_per_run']:.1f}")
            for k, m in memory.items()
        ],
    )
    print("\ntime above the floor, and how much of it GC explains (median walls):")
    for kind in args.inproc_stores:
        walls = {m: statistics.median(r["wall"] for r in timed[kind, m]) for m in args.gc_modes}
        if "default" not in walls:
            continue
        gap = walls["default"] - floor
        for mode, wall in walls.items():
            if mode != "default":
                saved = walls["default"] - wall
                print(
                    f"  {kind:7} gc {mode:17} {wall:6.2f} s ({wall / floor:4.1f}x floor): "
                    f"saves {saved:5.2f} s = {saved / gap:4.0%} of the {gap:.2f} s gap"
                )


def run_profile(args: argparse.Namespace, tmp: Path) -> None:
    spec = {
        "runs": args.profile_runs,
        "sleep": args.inproc_sleep,
        "steps": args.steps,
        "warmup": args.warmup,
        "tmp": str(tmp),
        "kind": "memory",
        "top": args.top,
    }
    print(
        f"\n== 4. profile: {args.profile_runs} concurrent runs on memory:// (as in 3)\n", flush=True
    )
    prof = in_child(
        {**spec, "mode": "profile", "gc": "default", "sorts": ["tottime", "cumulative"]}
    )
    print(
        f"cProfile, default GC (wall under the profiler {prof['wall']:.2f} s, "
        f"{prof['gc_s']:.2f} s of it in GC: a collection's time is charged to the "
        "function whose allocation started it)"
    )
    print(prof["report"])
    prof = in_child({**spec, "mode": "profile", "gc": "off", "sorts": ["tottime"]})
    print(f"\ncProfile, GC off (the CPU work alone; wall {prof['wall']:.2f} s)")
    print(prof["report"])
    print("\ntracemalloc")
    print(in_child({**spec, "mode": "alloc"})["report"], flush=True)


# -- output and arguments ------------------------------------------------------------------


def print_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> None:
    harness.print_table(header, body)
    sys.stdout.flush()


def numbers(kind: type) -> Callable[[str], list[Any]]:
    return lambda text: [kind(x) for x in text.split(",")]


def parse() -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke version of everything")
    add("--only", type=lambda s: s.split(","), default=["drain", "recovery", "inproc", "profile"],
        help="comma-separated: drain,recovery,inproc,profile")  # fmt: skip
    add("--stores", type=lambda s: s.split(","), default=["postgres", "sqlite"])
    add("--repeat", type=int, default=3, help="measurements per row (the median is shown)")
    add("--steps", type=int, default=3, help="tool calls per run, then an answer")
    add("--runs", type=int, default=2000, help="queued runs of the drain")
    add("--workers", type=numbers(int), default=[1, 2, 4])
    add("--concurrency", type=int, default=50, help="--concurrency of each worker")
    add("--tool-sleep", type=float, default=0.01, help="seconds per tool call (drain, recovery)")
    add("--recovery-runs", type=int, default=10)
    add("--lease-ttl", type=float, default=2.0)
    add("--poll", type=float, default=0.5)
    add("--inproc-runs", type=int, default=10_000)
    add("--inproc-sleep", type=float, default=0.05)
    add("--inproc-stores", type=lambda s: s.split(","), default=["memory", "sqlite"])
    add("--gc-modes", type=lambda s: s.split(","),
        default=["default", "freeze", "threshold", "freeze+threshold", "off"])  # fmt: skip
    add("--gc-threshold", type=numbers(int), default=[50_000, 200, 100])
    add("--warmup", type=int, default=200, help="runs before the in-process measurement")
    add("--profile-runs", type=int, default=10_000)
    add("--top", type=int, default=15)
    add("--quiet-wait", type=float, default=120.0,
        help="seconds to wait at most, before each measurement, for the machine to be idle")  # fmt: skip
    add("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.workers, args.repeat = 200, [1, 2], 1
        args.recovery_runs, args.inproc_runs, args.profile_runs = 3, 1000, 1000
        args.gc_modes, args.warmup = ["default", "freeze"], 50
    return args


def main() -> None:
    args = parse()
    QUIET_WAIT[0] = args.quiet_wait
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))))
        return
    import orchestrion

    print(f"orchestrion from {Path(orchestrion.__file__).parent}", flush=True)
    sections = {
        "drain": run_drains,
        "recovery": run_recovery,
        "inproc": run_inproc,
        "profile": run_profile,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            sections[name](args, Path(tmp))


if __name__ == "__main__":
    main()
