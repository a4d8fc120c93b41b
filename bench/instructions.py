"""Instructions per run, counted by valgrind: a regression check that machine noise cannot blur.

Wall-clock medians on a shared machine move by 5-10% from one run to the next;
`valgrind --tool=callgrind` counts the instructions executed, which repeat to
within about 1% (the SQLite rows vary a little more: how many appends one commit
groups depends on timing). Each workload of `make bench` runs `few` and then
`many` times in a fresh interpreter; the difference, divided by `many - few`,
is the count per run, start-up and warm-up excluded. Hash randomisation is off.

    .venv/bin/python bench/instructions.py                       # this checkout
    .venv/bin/python bench/instructions.py --against ../old/src  # side by side with another

`--against` puts another checkout's `src` first on the path, so the same
workloads (these files) run on both, side by side. Not part of `make bench`:
about 15 minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_core
import bench_patterns

from orchestrion import Agent, Concurrent, LoopGuard, Runtime, Supervisor, workflow
from orchestrion.context import RunContext
from orchestrion.testing import FunctionModel, ScriptedModel

SRC = Path(__file__).parent.parent / "src"

# (name, store, the workload's runs: few, many)
WORKLOADS = [
    ("agent, 10 tool calls", "memory", 50, 150),
    ("agent, answer only", "memory", 100, 300),
    ("agent, 10 tool calls", "sqlite", 50, 150),
    ("agent, 10 tool calls", "sqlite sync", 50, 150),
    ("agent, 10 write-tool calls", "sqlite", 50, 150),
    ("supervisor, 10 delegations", "memory", 50, 150),
    ("supervisor, 10 delegations", "sqlite", 50, 150),
    ("fan-out, 1000 branches", "memory", 2, 6),
    ("fan-out, 1000 branches", "sqlite", 2, 6),
]


@workflow(name="work")
async def no_wait(ctx: RunContext[Any], input: Any) -> int:
    await asyncio.sleep(0)  # the bench's 10 ms sleep costs time, not instructions
    return 1


def _runnable(workload: str) -> Any:
    """What `make bench` runs for `workload`, built from the bench's own pieces."""
    if workload.startswith("agent"):
        steps = 0 if "answer only" in workload else bench_core.STEPS
        one = bench_core.script(1, "record" if "write" in workload else "lookup")
        return Agent(
            name="bench",
            model=ScriptedModel(one[bench_core.STEPS - steps :] * 100_000),
            tools=[bench_core.lookup, bench_core.record],
            max_turns=steps + 1,
            loop_guard=LoopGuard(write_repeats=None),  # ten writes are the workload
        )
    if workload.startswith("supervisor"):
        return Supervisor(
            name="team",
            manager=Agent(name="manager", model=FunctionModel(bench_patterns.manager_plan)),
            workers=[
                Agent(name=w, model=FunctionModel(bench_patterns.worker_answer))
                for w in bench_patterns.WORKERS
            ],
            max_rounds=bench_patterns.DELEGATIONS + 1,
        )
    return Concurrent(name="fan", branches=[no_wait] * bench_patterns.BRANCHES)


def _child(workload: str, store: str, runs: int) -> None:
    """Run `workload` `runs` times after a warm-up (inside valgrind)."""
    runnable = _runnable(workload)

    async def main(tmp: Path) -> None:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp / 'instructions.db'}"
        durability = "sync" if store.endswith("sync") else "async"
        async with Runtime(url, durability=durability) as runtime:
            for _ in range(3):
                await runtime.run(runnable, "go")
            gc.collect()
            for _ in range(runs):
                await runtime.run(runnable, "go")

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))


def _count(src: Path, workload: str, store: str, runs: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            workload,
            store,
            str(runs),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind said no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_run(src: Path, workload: str, store: str, few: int, many: int) -> int:
    return (_count(src, workload, store, many) - _count(src, workload, store, few)) // (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout's src, run side by side")
    parser.add_argument("--only", help="run the workloads whose name contains this")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, store, runs = args.child
        _child(workload, store, int(runs))
        return
    header = f"{'workload':30} {'store':12} {'this checkout':>14}"
    if args.against:
        header += f" {'--against':>14} {'change':>8}"
    print(f"instructions per run (valgrind callgrind)\n\n{header}")
    for workload, store, few, many in WORKLOADS:
        if args.only and args.only not in workload:
            continue
        with ThreadPoolExecutor(2) as pool:  # a valgrind process each, side by side
            counts = [
                pool.submit(per_run, src, workload, store, few, many)
                for src in (SRC, args.against)
                if src is not None
            ]
            here, *there = [c.result() for c in counts]
        line = f"{workload:30} {store:12} {here:14,}"
        if there:
            line += f" {there[0]:14,} {100 * (here - there[0]) / there[0]:+7.1f}%"
        print(line, flush=True)


if __name__ == "__main__":
    main()
