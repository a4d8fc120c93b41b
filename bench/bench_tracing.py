"""What tracing costs per step: the bench_core workload (one agent, 10 tool calls,
then its answer) untraced; traced into OpenTelemetry's no-op provider (orchestrion's
own part); and traced into its SDK with a batch span processor whose exporter drops
everything (the cost of making the spans, not of shipping them), with and without
message content.

    .venv/bin/python bench/bench_tracing.py --repeat 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_core import STEPS, lookup, record, script
from harness import Row, measure, table
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from orchestrion import Agent, Instrumentation, LoopGuard, Runtime
from orchestrion.testing import ScriptedModel


class Dropped(SpanExporter):
    """Takes every batch and keeps nothing."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    exporter = Dropped()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 16))
    variants = [
        ("memory", "memory://", False),
        (
            "memory traced, no-op provider",
            "memory://",
            Instrumentation(tracer_provider=trace.NoOpTracerProvider()),
        ),
        ("memory traced", "memory://", Instrumentation(tracer_provider=provider)),
        (
            "memory traced + content",
            "memory://",
            Instrumentation(tracer_provider=provider, capture_content=True),
        ),
        ("sqlite", f"sqlite:///{tmp / 'plain.db'}", False),
        (
            "sqlite traced",
            f"sqlite:///{tmp / 'traced.db'}",
            Instrumentation(tracer_provider=provider),
        ),
    ]
    found: list[Row] = []
    for name, url, instrument in variants:
        model = ScriptedModel(script(warmup + repeat, "lookup"))
        agent = Agent(
            name="bench",
            model=model,
            tools=[lookup, record],
            max_turns=STEPS + 1,
            loop_guard=LoopGuard(write_repeats=None),
        )
        async with Runtime(url, instrument=instrument) as runtime:

            async def one(i: int, runtime: Runtime = runtime, agent: Agent[str] = agent) -> None:
                result = await runtime.run(agent, "go")
                assert result.value == "done", result

            found.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), STEPS))
        model.assert_complete()
    provider.shutdown()
    traced_runs = 2 * (warmup + repeat) + (warmup + repeat)  # memory x2, sqlite
    assert exporter.spans == traced_runs * (1 + 2 * STEPS + 1), exporter.spans  # all made
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = await rows(args.warmup, args.repeat, Path(tmp))
    print(f"\n{STEPS} tool-call steps per run; warmup={args.warmup} repeat={args.repeat}\n")
    table(found, baseline="memory")
    by = {r.name: r.stats.median_ms for r in found}
    print("\ntracing's cost per step (a model request or a tool call: 21 spans a run):")
    for traced, plain in [
        ("memory traced, no-op provider", "memory"),
        ("memory traced", "memory"),
        ("memory traced + content", "memory"),
        ("sqlite traced", "sqlite"),
    ]:
        per_step = (by[traced] - by[plain]) / (2 * STEPS + 1)
        print(f"  {traced:26} +{per_step * 1000:.1f} µs/step ({by[traced] / by[plain]:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
