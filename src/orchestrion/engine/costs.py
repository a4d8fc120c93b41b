"""What a run's model steps spent, read back from its journal: per step, and summed
per agent and model (`orchestrion show`, `orchestrion usage`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrion import keys
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import ModelResponded, read
from orchestrion.engine.result import StepInfo
from orchestrion.messages import Usage

UNKNOWN = "?"
"""The agent or model of a step that does not say (a journal from before models were
kept in it, with no model named by the provider)."""


@dataclass(frozen=True, slots=True)
class Spent:
    """One model step's spending."""

    agent: str
    model: str
    usage: Usage
    seconds: float


def spent(step: StepInfo) -> Spent | None:
    """What a completed model step spent; None for any other step."""
    if step.kind != "model" or step.status is not StepStatus.COMPLETED:
        return None
    record = read(step.kind, step.status, step.result, f"Step {step.key}")
    return spent_in(step, record) if isinstance(record, ModelResponded) else None


def spent_in(step: StepInfo, record: ModelResponded) -> Spent:
    """What model step `step`, whose record is `record` (read already), spent."""
    model = record.by or record.fallback or record.response.model or UNKNOWN
    agent = keys.parse(step.key).agent or UNKNOWN
    return Spent(agent, model, record.response.usage, max(step.ended_at - step.started_at, 0.0))


@dataclass(slots=True)
class Totals:
    """Model steps summed: how many, their usage, and the seconds they took."""

    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    def add(self, one: Spent) -> None:
        self.calls += 1
        self.usage = self.usage + one.usage
        self.seconds += one.seconds

    def merge(self, other: Totals) -> None:
        self.calls += other.calls
        self.usage = self.usage + other.usage
        self.seconds += other.seconds


def by_agent_and_model(steps: Iterable[StepInfo]) -> dict[tuple[str, str], Totals]:
    """The model steps of `steps` summed per (agent, model), in the order first seen."""
    totals: dict[tuple[str, str], Totals] = {}
    for step in steps:
        one = spent(step)
        if one is not None:
            totals.setdefault((one.agent, one.model), Totals()).add(one)
    return totals
