"""What run ownership costs: a claim per run, a heartbeat per lease, fsync'd writes.

- claim + release: the two store writes a run's lease adds (the claim is folded
  into the run's creation and the release into its final status for a new run;
  a resume makes both explicitly).
- renew: one heartbeat of a runtime renewing N leases in one write; it runs
  every third of the lease's ttl (10 s by default), so per step it is ~0.
- write steps with and without fsync: a write tool's `started` and every status
  change are committed with `synchronous=FULL` (they survive an OS crash);
  forcing NORMAL shows what that durability costs.

    .venv/bin/python bench/bench_leases.py --repeat 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, measure, table

from orchestrion import Agent, LoopGuard, Runtime, tool
from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.store import open_store
from orchestrion.stores import _sqlite_writer
from orchestrion.testing import ScriptedModel, call

STEPS = 10


@tool(effect="write")
async def record(i: int) -> str:
    """Record item i (a write: journaled as started, then completed, fsync'd)."""
    return f"recorded {i}"


async def lease_rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    rows = []
    for name, url in (("memory", "memory://"), ("sqlite", f"sqlite:///{tmp / 'leases.db'}")):
        store = open_store(url)
        now = time.time()
        for i in range(max(warmup + repeat, 1000)):
            await store.create_run(
                RunRecord(id=f"r{i}", name="a", status=RunStatus.RUNNING, created_at=now)
            )

        async def claim_release(i: int, store: object = store) -> None:
            record = await store.claim(f"r{i}", "bench")  # type: ignore[attr-defined]
            await store.release(f"r{i}", record.token)  # type: ignore[attr-defined]

        rows.append(
            Row(
                f"{name}: claim + release",
                await measure(claim_release, warmup=warmup, repeat=repeat),
                1,
            )
        )
        for n in (1, 100, 1000):
            held = {f"r{i}": 0 for i in range(n)}
            for run_id in held:
                held[run_id] = (await store.claim(run_id, "bench")).token  # type: ignore[attr-defined]

            async def renew(i: int, store: object = store, held: dict[str, int] = held) -> None:
                lost = await store.renew(held)  # type: ignore[attr-defined]
                assert not lost

            rows.append(
                Row(
                    f"{name}: renew {n} leases",
                    await measure(renew, warmup=5, repeat=min(repeat, 100)),
                    1,
                )
            )
        await store.close()
    return rows


async def fsync_rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    rows = []
    real = _sqlite_writer._Writer._set_synchronous
    for label, forced in (("fsync'd (FULL)", None), ("not fsync'd (NORMAL)", "NORMAL")):
        if forced is not None:
            _sqlite_writer._Writer._set_synchronous = (  # type: ignore[method-assign]
                lambda self, conn, level: real(self, conn, "NORMAL")
            )
        try:
            model = ScriptedModel(
                ([call("record", {"i": n}) for n in range(STEPS)] + ["done"]) * (warmup + repeat)
            )
            agent = Agent(
                name="bench",
                model=model,
                tools=[record],
                max_turns=STEPS + 1,
                loop_guard=LoopGuard(write_repeats=None),  # ten writes are the workload
            )
            async with Runtime(f"sqlite:///{tmp / f'fsync-{forced}.db'}") as runtime:

                async def one(
                    i: int, runtime: Runtime = runtime, agent: Agent[str] = agent
                ) -> None:
                    assert (await runtime.run(agent, "go")).value == "done"

                rows.append(
                    Row(
                        f"10 write steps, {label}",
                        await measure(one, warmup=warmup, repeat=repeat),
                        STEPS,
                    )
                )
        finally:
            _sqlite_writer._Writer._set_synchronous = real  # type: ignore[method-assign]
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # on the project's disk, as users' stores are
        leases = await lease_rows(args.warmup, args.repeat, Path(tmp))
        fsync = await fsync_rows(args.warmup, args.repeat, Path(tmp))
    print(f"\nLease operations (one call each); warmup={args.warmup} repeat={args.repeat}\n")
    table(leases)
    print("\nWrite-tool steps on SQLite, durable commits fsync'd or not\n")
    table(fsync, baseline="10 write steps, not fsync'd (NORMAL)")


if __name__ == "__main__":
    asyncio.run(main())
