"""A PeerNetwork over worker processes, its mail on Redis Streams, against the same
network in one run (rounds, the in-process bus): what a message costs.

alice and bob ping-pong ROUNDS times (bench/peers_target.py; models that answer at
once, so only orchestration is measured). Each message is one turn of its
recipient: a journaled read of the mailbox, a model call, a `send_message` write
tool call (committed before the message leaves), a second model call.

1. latency: one network; `orchestrion worker` processes (--concurrency 10) are
   started and idle first, then the network is submitted. Time per message =
   (the network's completion - its submission, from the store) / messages.
2. throughput: NETWORKS networks at once on WORKERS workers: messages per second,
   from the first submission to the last completion.
3. rounds: the same network in one run, `Runtime.run` in this process, on the same
   store: time per message.

    .venv/bin/python bench/bench_peers.py
    .venv/bin/python bench/bench_peers.py --stores sqlite --rounds 20 --networks 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import POSTGRES_URL, drop_schema, print_table

from orchestrion import Budget, RunStatus, Runtime
from orchestrion.engine.store import open_store

HERE = Path(__file__).resolve().parent
TARGET = str(HERE / "peers_target.py")


def store_url(kind: str, tmp: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'peers-{uuid.uuid4().hex[:8]}.db'}", None
    schema = f"bench_peers_{uuid.uuid4().hex[:12]}"
    return f"{POSTGRES_URL}?schema={schema}", schema


async def submit(url: str, count: int, rounds: int) -> list[str]:
    async with Runtime(url) as runtime:
        return [await runtime.submit(f"{TARGET}:spread", f"start {rounds}") for _ in range(count)]


async def finished(url: str, ids: list[str]) -> tuple[bool, float, float]:
    """Whether every network is done; its first creation and last update."""
    store = open_store(url, read_only=True)
    try:
        records = [await store.get_run(i) for i in ids]
    finally:
        await store.close()
    found = [r for r in records if r is not None]
    working = (RunStatus.QUEUED, RunStatus.RUNNING)
    done = len(found) == len(ids) and all(r.status not in working for r in found)
    for r in found if done else ():
        if r.output != f"done after {ROUNDS[0]}":
            raise SystemExit(f"network {r.id} ended {r.status.value}: {r.error or r.output}")
    return done, min(r.created_at for r in found), max(r.updated_at for r in found)


ROUNDS = [0]


def spread(kind: str, tmp: Path, workers: int, networks: int, rounds: int) -> float:
    """Seconds from the first submission to the last completion."""
    url, schema = store_url(kind, tmp)
    asyncio.run(submit(url, 0, rounds))  # make the store before the workers open it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    concurrency = str(max(10, 3 * networks))
    command = [sys.executable, "-m", "orchestrion", "worker", "--store", url, "--poll", "0.2"]
    command += ["--concurrency", concurrency, "--max-model-calls", "1000000"]
    procs = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        time.sleep(2.0)  # started and idle
        ids = asyncio.run(submit(url, networks, rounds))
        while True:
            done, created, updated = asyncio.run(finished(url, ids))
            if done:
                return updated - created
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        if schema:
            asyncio.run(drop_schema(schema))


async def in_one_run(kind: str, tmp: Path, rounds: int) -> float:
    sys.path.insert(0, str(HERE))
    from peers_target import rounds as network

    url, schema = store_url(kind, tmp)
    try:
        async with Runtime(url, budget=Budget.unlimited()) as runtime:
            await runtime.run(network, "start 2")  # warm up
            t0 = time.perf_counter()
            result = await runtime.run(network, f"start {rounds}")
            wall = time.perf_counter() - t0
            assert result.value == f"done after {rounds}", result
            return wall
    finally:
        if schema:
            await drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ROUNDS[0] = args.rounds
    messages = 2 * args.rounds + 1  # the input, then a ping and a pong per round
    body = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores.split(","):
            one = spread(kind, Path(tmp), args.workers, 1, args.rounds)
            many = spread(kind, Path(tmp), args.workers, args.networks, args.rounds)
            local = asyncio.run(in_one_run(kind, Path(tmp), args.rounds))
            body.append((
                kind,
                f"{one / messages * 1000:.2f}",
                f"{args.networks * messages / many:.0f}",
                f"{local / messages * 1000:.2f}",
                f"{one / local:.1f}",
            ))  # fmt: skip
    print(
        f"\nPeerNetwork ping-pong, {args.rounds} rounds ({messages} messages); "
        f"{args.workers} workers; throughput with {args.networks} networks at once\n"
    )
    header = ("store", "spread ms/message", "spread messages/s", "rounds ms/message", "x rounds")
    print_table(header, body)


if __name__ == "__main__":
    main()
