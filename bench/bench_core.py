"""Per tool-call step overhead: one agent making 10 tool calls, then answering.

Side by side in one process: a hand-written asyncio loop (the floor),
orchestrion on the memory store, a SQLite file and PostgreSQL, and LangGraph
(the anchor) without a checkpointer, in memory, on SQLite and on PostgreSQL,
and DBOS's steps on the same PostgreSQL server (`ORCHESTRION_BENCH_POSTGRES`,
default the local server).

    make bench            # or: .venv/bin/python bench/bench_core.py --repeat 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import POSTGRES_URL, Row, drop_schema, measure, table

from orchestrion import Agent, LoopGuard, Runtime, tool
from orchestrion.messages import ModelResponse, ToolCall, ToolResult
from orchestrion.testing import ScriptedModel, call

STEPS = 10


@tool
async def lookup(i: int) -> str:
    """Look up item i."""
    return f"item {i}"


@tool(effect="write")
async def record(i: int) -> str:
    """Record item i (a write: journaled as started, then completed)."""
    return f"recorded {i}"


def script(runs: int, name: str) -> list[object]:
    one = [call(name, {"i": n}) for n in range(STEPS)] + ["done"]
    return one * runs


async def hand_written(_: int) -> None:
    """The same workload as a plain asyncio loop: the floor for any framework."""
    messages: list[object] = ["go"]
    for n in range(STEPS + 1):
        response = (
            ModelResponse(tool_calls=(ToolCall(f"c{n}", "lookup", f'{{"i": {n}}}'),))
            if n < STEPS
            else ModelResponse(text="done")
        )
        messages.append(response)
        for c in response.tool_calls:
            args = lookup.parse_arguments(c.arguments)
            messages.append(ToolResult(c.id, c.name, await lookup.function(**args)))
    assert isinstance(messages[-1], ModelResponse)


async def orchestrion_rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    rows = [
        Row("hand-written loop", await measure(hand_written, warmup=warmup, repeat=repeat), STEPS)
    ]
    schema = f"o_bench_{uuid.uuid4().hex[:8]}"  # dropped at the end
    pg = f"{POSTGRES_URL}?schema={schema}"
    variants = [
        ("orchestrion memory", "memory://", "async", "lookup"),
        ("orchestrion sqlite", f"sqlite:///{tmp / 'o-async.db'}", "async", "lookup"),
        ("orchestrion sqlite sync", f"sqlite:///{tmp / 'o-sync.db'}", "sync", "lookup"),
        ("orchestrion sqlite write-tool", f"sqlite:///{tmp / 'o-write.db'}", "async", "record"),
        ("orchestrion postgres", pg, "async", "lookup"),
        ("orchestrion postgres sync", pg, "sync", "lookup"),
        ("orchestrion postgres write-tool", pg, "async", "record"),
    ]
    for name, url, durability, tool_name in variants:
        model = ScriptedModel(script(warmup + repeat, tool_name))
        # Ten writes in a row are the workload, not a runaway: the write check is off.
        agent = Agent(
            name="bench",
            model=model,
            tools=[lookup, record],
            max_turns=STEPS + 1,
            loop_guard=LoopGuard(write_repeats=None),
        )
        async with Runtime(url, durability=durability) as runtime:  # type: ignore[arg-type]

            async def one(i: int, runtime: Runtime = runtime, agent: Agent[str] = agent) -> None:
                result = await runtime.run(agent, "go")
                assert result.value == "done", result

            rows.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), STEPS))
        model.assert_complete()
    await drop_schema(schema)
    return rows


async def langgraph_rows(warmup: int, repeat: int) -> list[Row]:
    try:
        from langgraph_workload import graph_variant, run_once
    except ImportError as exc:
        print(
            f"LangGraph not installed ({exc}): install the bench extra: pip install -e '.[bench]'"
        )
        return []
    rows = []
    # LangGraph's default durability is "async" (checkpoint written while the next
    # step runs); "sync" waits for each checkpoint, like orchestrion's sync mode.
    for variant, durability in (
        ("none", None),
        ("memory", None),
        ("sqlite", None),
        ("sqlite", "sync"),
        ("postgres", None),
        ("postgres", "sync"),
    ):
        label = f"langgraph {variant}" + (f" {durability}" if durability else "")
        async with graph_variant(variant) as graph:

            async def one(
                i: int, graph: object = graph, label: str = label, d: str | None = durability
            ) -> None:
                await run_once(graph, f"{label}{i}", durability=d)

            rows.append(Row(label, await measure(one, warmup=warmup, repeat=repeat), STEPS))
    return rows


async def dbos_rows(warmup: int, repeat: int) -> list[Row]:
    try:
        from dbos_workload import dbos_agent
    except ImportError as exc:
        print(f"DBOS not installed ({exc}): install the bench extra: pip install -e '.[bench]'")
        return []
    async with dbos_agent(POSTGRES_URL) as run:

        async def one(i: int) -> None:
            assert await run() == "done"

        return [Row("dbos postgres", await measure(one, warmup=warmup, repeat=repeat), STEPS)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = await orchestrion_rows(args.warmup, args.repeat, Path(tmp))
        rows += await langgraph_rows(args.warmup, args.repeat)
        rows += await dbos_rows(args.warmup, args.repeat)
    print(f"\n{STEPS} tool-call steps per run; warmup={args.warmup} repeat={args.repeat}\n")
    table(rows, baseline="hand-written loop")
    floor = rows[0].stats.median_ms
    print("\noverhead per step above the hand-written loop (ms), and anchor ratio:")
    anchors = {r.name: r for r in rows if r.name.startswith(("langgraph", "dbos"))}
    for r in rows[1:]:
        if r.name.startswith(("langgraph", "dbos")):
            continue
        overhead = (r.stats.median_ms - floor) / STEPS
        anchor_name = "langgraph none"
        for store in ("sqlite", "postgres"):
            if store in r.name:
                anchor_name = (
                    f"langgraph {store} sync" if "sync" in r.name else f"langgraph {store}"
                )
        anchor = anchors.get(anchor_name)
        ratio = (
            f"   {anchor_name}: {anchor.stats.median_ms / r.stats.median_ms:.1f}x slower"
            if anchor
            else ""
        )
        dbos = anchors.get("dbos postgres")
        if dbos and "postgres" in r.name:
            ratio += f", dbos: {dbos.stats.median_ms / r.stats.median_ms:.1f}x slower"
        print(f"  {r.name:32} {overhead:.4f} ms/step{ratio}")


if __name__ == "__main__":
    asyncio.run(main())
