"""Tiny timing harness for the side-by-side benchmarks, and the PostgreSQL they share."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

POSTGRES_URL = os.environ.get(
    "ORCHESTRION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
"""The PostgreSQL server of the benches' postgres rows (a fresh schema each, dropped after)."""


async def drop_schema(schema: str) -> None:
    """Drop a bench's PostgreSQL schema, with everything in it."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@dataclass(frozen=True)
class Stats:
    median_ms: float
    p90_ms: float
    n: int


async def measure(fn: Callable[[int], Awaitable[object]], *, warmup: int, repeat: int) -> Stats:
    """Await ``fn(i)`` ``warmup`` times untimed, then ``repeat`` times timed (i keeps counting)."""
    for i in range(warmup):
        await fn(i)
    samples: list[float] = []
    for i in range(warmup, warmup + repeat):
        t0 = time.perf_counter_ns()
        await fn(i)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    samples.sort()
    p90 = samples[min(len(samples) - 1, max(0, round(0.9 * len(samples)) - 1))]
    return Stats(median_ms=statistics.median(samples), p90_ms=p90, n=len(samples))


@dataclass(frozen=True)
class Row:
    name: str
    stats: Stats
    steps: int


def table(rows: Sequence[Row], *, baseline: str | None = None) -> None:
    """Print name | median ms/run | p90 ms/run | ms/step | ratio vs ``baseline`` (default: first row)."""
    if not rows:
        return
    base = next((r for r in rows if r.name == baseline), rows[0])
    header = ("variant", "median ms/run", "p90 ms/run", "ms/step", f"x {base.name}")
    body = [
        (
            r.name,
            f"{r.stats.median_ms:.3f}",
            f"{r.stats.p90_ms:.3f}",
            f"{r.stats.median_ms / r.steps:.4f}",
            f"{r.stats.median_ms / base.stats.median_ms:.2f}",
        )
        for r in rows
    ]
    print_table(header, body)


def print_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell: the first left-aligned, the rest right."""
    widths = [max(len(c[k]) for c in (header, *body)) for k in range(len(header))]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if k == 0 else c.rjust(w)
        for k, (c, w) in enumerate(zip(cells, widths, strict=True))
    )
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(fmt(cells))
