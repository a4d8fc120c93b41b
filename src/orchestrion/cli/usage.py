"""`orchestrion usage`: tokens and cost by agent and model over a time window."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from orchestrion._json import dumps_str
from orchestrion.cli import common
from orchestrion.cli.render import console, dollars
from orchestrion.cli.views import totals_json, usage_json
from orchestrion.engine.costs import Totals, by_agent_and_model
from orchestrion.engine.runtime import Runtime
from orchestrion.engine.store import DEFAULT_STORE_URL, open_store
from orchestrion.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_epoch(text: str, now: float) -> float:
    """`24h`, `30m`, `7d`, `2w` ago, or a date or time (`2026-11-01`, `2026-11-01T09:00`)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if found:
        return now - float(found[1]) * _UNITS[found[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(
            f"--since {text!r}: give a duration (30m, 24h, 7d) or a date (2026-11-01)."
        ) from None


def usage(
    since: Annotated[
        str, typer.Option("--since", help="The window: 30m, 24h, 7d, or a date (2026-11-01).")
    ] = "24h",
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many runs, newest first.")
    ] = 1000,
    store: common.StoreOption = DEFAULT_STORE_URL,
    as_json: common.JsonOption = False,
) -> None:
    """Tokens, cost and model time of the runs started in a window, by agent and model."""
    with common.errors():
        start = since_epoch(since, time.time())
        runs, totals, more = asyncio.run(_gather(store, start, limit))
    whole = Totals()
    for t in totals.values():
        whole.merge(t)
    if as_json:
        rows = [totals_json(agent, model, t) for (agent, model), t in totals.items()]
        print(
            dumps_str(
                {
                    "since": start,
                    "runs": runs,
                    "more": more,
                    "by_agent": rows,
                    "total": {**usage_json(whole.usage), "calls": whole.calls},
                }
            )
        )
        return
    out = console()
    table = Table(title=f"model calls of {runs} run(s) since {_clock(start)}", show_edge=False)
    for column in ("agent", "model", "calls", "input", "output", "cost", "model time"):
        table.add_column(column, justify="left" if column in ("agent", "model") else "right")
    for (agent, model), t in sorted(totals.items(), key=lambda item: -item[1].usage.cost):
        u = t.usage
        row = (str(t.calls), str(u.input_tokens), str(u.output_tokens), dollars(u.cost))
        table.add_row(agent, model, *row, f"{t.seconds:.1f} s")
    u = whole.usage
    table.add_row(
        Text("total", style="bold"), "", str(whole.calls), str(u.input_tokens),
        str(u.output_tokens), dollars(u.cost), f"{whole.seconds:.1f} s",
    )  # fmt: skip
    out.print(table)
    if more:
        out.print(Text(f"Only the newest {limit} runs were counted: raise --limit.", "yellow"))


async def _gather(
    store: str, start: float, limit: int
) -> tuple[int, dict[tuple[str, str], Totals], bool]:
    """How many runs started since `start` (newest `limit`), their model calls summed,
    and whether older runs of the window were left out."""
    async with Runtime(open_store(store, read_only=True)) as runtime:
        records = await runtime.list(limit=limit + 1)
        inside = [r for r in records if r.created_at >= start]
        more = len(inside) > limit
        totals: dict[tuple[str, str], Totals] = {}
        for record in inside[:limit]:
            for key, t in by_agent_and_model(await runtime.history(record.id)).items():
                totals.setdefault(key, Totals()).merge(t)
        return min(len(inside), limit), totals, more


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
