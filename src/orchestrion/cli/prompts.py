"""Asking a person at a terminal to answer a run's interrupts."""

from __future__ import annotations

from typing import Any

from rich.prompt import Confirm, Prompt

from orchestrion._json import dumps_str, loads
from orchestrion.cli.render import console, pending_line
from orchestrion.engine.interrupts import Approve, Interrupt, Reject


def ask_all(interrupts: list[Interrupt]) -> dict[str, Any]:
    return {i.id: ask(i) for i in interrupts}


def ask(interrupt: Interrupt) -> Any:
    out = console()
    out.print(pending_line(interrupt))
    if interrupt.kind == "approval":
        if Confirm.ask("Approve?", console=out, default=False):
            return Approve()
        return Reject(Prompt.ask("Reason", console=out, default="rejected by the operator"))
    out.print(f"Expected: {dumps_str(interrupt.schema)}", markup=False, highlight=False)
    raw = Prompt.ask("Answer (JSON or text)", console=out)
    try:
        return loads(raw)
    except ValueError:
        return raw
