"""Prometheus metrics of a runtime's runs and a worker's queues (`prometheus_client`).

orchestrion's own metrics are `orchestrion_*`; beside them, the GenAI conventions'
client metrics, `gen_ai_client_operation_duration_seconds` and
`gen_ai_client_token_usage`, with their labels and bucket boundaries. Labels are
bounded by the code, never by the traffic: runnable, agent, model, tool, breaker and
queue names, step kinds and statuses. Never a run id.

A run's metrics come from its events (`MeteredEvents` wraps them) and from its model
steps (`model_called`); a worker's from its claims and a poll of the store's counts.
Replayed steps are not counted again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from orchestrion.engine.events import Events, Relay
from orchestrion.models.registry import provider_and_model

if TYPE_CHECKING:
    from orchestrion._json import JSON
    from orchestrion.engine.result import RunResult
    from orchestrion.messages import Usage

_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
"""The GenAI conventions' boundaries for `gen_ai.client.operation.duration` (seconds)."""
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))
"""The GenAI conventions' boundaries for `gen_ai.client.token.usage`: 1, 4, 16, ... 4^13."""
_STEP_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
COUNTED = ("queued", "running", "interrupted")
"""The statuses of `orchestrion_runs` (`RunCounts.run_counts`)."""
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""`orchestrion_breaker_state`'s values."""

_shared: dict[int, Metrics] = {}


class Metrics:
    """The metrics of the runtimes (and workers) of one registry: make one with
    `Metrics.of(registry)` (the same object for the same registry), give it to
    `Runtime(metrics=...)`, and serve the registry (`orchestrion worker --metrics-port`,
    or `prometheus_client.start_http_server`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registry = registry
        self.runs_started = Counter(
            "orchestrion_runs_started",
            "Executions of runs begun (resumed: a resume or takeover).",
            ["runnable", "resumed"],
            registry=r,
        )
        self.runs_finished = Counter(
            "orchestrion_runs_finished",
            "Executions of runs ended, by the status they ended in.",
            ["runnable", "status"],
            registry=r,
        )
        self.steps = Counter(
            "orchestrion_steps",
            "Steps executed (replayed ones are not counted), by kind and status.",
            ["kind", "status"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "orchestrion_step_duration_seconds",
            "Duration of executed steps, by kind.",
            ["kind"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "orchestrion_tokens",
            "Tokens of model responses, by model, agent and type.",
            ["model", "agent", "type"],
            registry=r,
        )
        self.cost = Counter(
            "orchestrion_cost_usd",
            "Cost of model responses in USD (priced models), by model and agent.",
            ["model", "agent"],
            registry=r,
        )
        self.operation_seconds = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Measures number of input and output tokens used.",
            [
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_token_type",
            ],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "orchestrion_retries",
            "Failed attempts retried, by step kind and target.",
            ["kind", "target"],
            registry=r,
        )
        self.fallbacks = Counter(
            "orchestrion_fallbacks",
            "Fallbacks taken: a model or agent gave up, another took over.",
            ["failed", "used"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "orchestrion_breaker_state",
            "Each circuit breaker's state (0 closed, 1 half-open, 2 open), as this process last saw it.",
            ["breaker"],
            registry=r,
        )
        self.breaker_changes = Counter(
            "orchestrion_breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            ["breaker", "state"],
            registry=r,
        )
        self.loop_guards = Counter(
            "orchestrion_loop_guard_triggers",
            "Loops found by loop guards, by kind and action taken.",
            ["kind", "action"],
            registry=r,
        )
        self.interrupts = Counter(
            "orchestrion_interrupts",
            "Questions to humans a run stopped to wait for, by kind.",
            ["kind"],
            registry=r,
        )
        self.handoffs = Counter(
            "orchestrion_handoffs",
            "Conversations handed from one agent to another.",
            ["source", "target"],
            registry=r,
        )
        # Workers (see `engine.worker`).
        self.claims = Counter(
            "orchestrion_worker_claims",
            "Runs claimed by workers, by queue.",
            ["queue"],
            registry=r,
        )
        self.takeovers = Counter(
            "orchestrion_worker_takeovers",
            "Runs claimed after their previous worker's lease ended (it died or stalled), by queue.",
            ["queue"],
            registry=r,
        )
        self.in_flight = Gauge(
            "orchestrion_worker_runs_in_flight",
            "Runs working in this process's workers now.",
            registry=r,
        )
        self.runs_by_status = Gauge(
            "orchestrion_runs",
            "Runs of the store by status and queue (queued: the queue's depth; interrupted: waiting for humans), as last polled.",
            ["status", "queue"],
            registry=r,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> Metrics:
        """The metrics registered in `registry` (prometheus_client's global one by default)."""
        found = _shared.get(id(registry))
        if found is None or found.registry is not registry:
            found = _shared[id(registry)] = cls(registry)
        return found

    def events(self, inner: Events, asked: Iterable[str] = ()) -> Events:
        """The run's events, each also counted; `asked`: the ids of the interrupts the
        run waited for already (counted when first asked)."""
        return MeteredEvents(inner, self, frozenset(asked))

    def model_called(self, agent: str, model: str, usage: Usage, seconds: float) -> None:
        """A live model request of `agent` that `model` answered."""
        provider, name = provider_and_model(model)
        self.operation_seconds.labels("chat", provider, name).observe(seconds)
        for kind, tokens in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            self.token_usage.labels("chat", provider, name, kind).observe(tokens)
            self.tokens.labels(model, agent, kind).inc(tokens)
        if usage.cost:
            self.cost.labels(model, agent).inc(usage.cost)

    def polled(self, queues: Iterable[str], counts: Mapping[tuple[str, str], int]) -> None:
        """The store's runs of `queues` by (status, queue), as a worker last counted
        them (0 where none): each series is set, none removed, so a scrape never sees
        a queue missing."""
        for queue in queues:
            for status in COUNTED:
                self.runs_by_status.labels(status, queue).set(counts.get((status, queue), 0))


class MeteredEvents(Relay):
    """`Events` that also count: runs, steps, retries, fallbacks, breakers, loops,
    handoffs and interrupts."""

    __slots__ = ("asked", "metrics", "name")

    def __init__(self, inner: Events, metrics: Metrics, asked: frozenset[str]) -> None:
        super().__init__(inner, listening=True)  # every step's end is counted
        self.metrics = metrics
        self.asked = asked
        self.name = ""
        """The runnable's name (from `run_started`): the run's label."""

    def run_started(self, name: str, resumed: bool) -> None:
        self.inner.run_started(name, resumed)
        self.name = name
        self.metrics.runs_started.labels(name, "true" if resumed else "false").inc()

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None:
        self.inner.step_completed(key, kind, result, started_at)
        self.metrics.steps.labels(kind, "completed").inc()
        self.metrics.step_seconds.labels(kind).observe(max(time.time() - started_at, 0.0))

    def step_failed(self, key: str, kind: str, error: BaseException) -> None:
        self.inner.step_failed(key, kind, error)
        self.metrics.steps.labels(kind, "failed").inc()

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        self.inner.retrying(key, kind, target, attempt, error, wait)
        self.metrics.retries.labels(kind, target).inc()

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        self.inner.fallback_used(key, failed, used, error)
        self.metrics.fallbacks.labels(failed, used).inc()

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        self.inner.breaker_changed(key, name, old, new)
        self.metrics.breaker_state.labels(name).set(BREAKER_STATES.get(new, -1))
        self.metrics.breaker_changes.labels(name, new).inc()

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        self.inner.loop_guard_triggered(key, kind, subject, times, action, replayed)
        if replayed:
            return  # seen when it happened
        self.metrics.loop_guards.labels(kind, action).inc()

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        self.inner.transferred(key, source, target, reason, replayed)
        if replayed:
            return  # seen when it happened
        self.metrics.handoffs.labels(source, target).inc()

    def run_finished(self, result: RunResult[object]) -> None:
        self.inner.run_finished(result)
        for interrupt in result.interrupts:
            if interrupt.id not in self.asked:  # else asked by an earlier execution
                self.metrics.interrupts.labels(interrupt.kind).inc()
        self.metrics.runs_finished.labels(self.name, result.status.value).inc()
