"""The CLI's JSON (`--json`): one shape for a run, a step, usage and an outcome,
wherever a command prints one (documented in docs/observability.md)."""

from __future__ import annotations

import time
from typing import Any

from orchestrion._json import JSON, to_jsonable
from orchestrion.engine.costs import Totals, spent
from orchestrion.engine.journal import RunRecord
from orchestrion.engine.result import RunResult, StepInfo
from orchestrion.messages import Usage


def usage_json(usage: Usage) -> dict[str, JSON]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "requests": usage.requests,
        "cost_usd": usage.cost,
    }


def run_json(record: RunRecord) -> dict[str, JSON]:
    """A run as `runs --json` lists it and `show --json` shows it."""
    data = record.to_json()
    del data["v"]  # the stored record's version, not this view's
    data["usage"] = usage_json(Usage.from_json(record.usage))
    data["orphaned_since"] = record.orphaned_since(time.time())
    return data


def step_json(step: StepInfo) -> dict[str, JSON]:
    """A step as `show --json` lists it: with its duration and, for a model step, the
    agent and model and what they spent."""
    data = step.to_json()
    data["duration_ms"] = round(max(step.ended_at - step.started_at, 0.0) * 1000, 3)
    one = spent(step)
    if one is not None:
        data["agent"], data["model"] = one.agent, one.model
        data["usage"] = usage_json(one.usage)
    return data


def totals_json(agent: str, model: str, totals: Totals) -> dict[str, JSON]:
    return {
        "agent": agent,
        "model": model,
        "calls": totals.calls,
        "usage": usage_json(totals.usage),
        "seconds": round(totals.seconds, 3),
    }


def result_json(result: RunResult[Any]) -> dict[str, JSON]:
    """What `run --json` and `resume --json` print: the outcome of the work just done."""
    return {
        "id": result.run_id,
        "status": result.status.value,
        "output": to_jsonable(result.value),
        "error": result.error,
        "interrupts": [i.to_json() for i in result.interrupts],
        "usage": usage_json(result.usage),
        "partial": result.partial,
    }
