"""Prometheus metrics (`engine.metrics`): scraped from the registry in the
exposition format and parsed with `prometheus_client`'s own parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrion import Agent, Breaker, LoopGuard, Metrics, Policy, Retry, RunStatus, Runtime, tool
from orchestrion.engine.store import Store
from orchestrion.testing import (
    Faults,
    FaultyModel,
    FunctionModel,
    ScriptedModel,
    ServerError,
    TestModel,
    call,
)

from ._support import Crash, approving_agent, payer_that_dies_once


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the registry's exposition, by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.of(CollectorRegistry())


@tool
def get_balance(account: str) -> int:
    """The balance of an account."""
    return 100


async def test_a_run_counts_its_steps_tokens_and_outcome(metrics: Metrics) -> None:
    agent = Agent(name="bank", model=TestModel(), tools=[get_balance])
    async with Runtime("memory://", metrics=metrics) as runtime:
        result = await runtime.run(agent, "balance?")
    assert result.status is RunStatus.COMPLETED
    s = scrape(metrics.registry)
    assert value(s, "orchestrion_runs_started_total", runnable="bank", resumed="false") == 1
    assert value(s, "orchestrion_runs_finished_total", runnable="bank", status="completed") == 1
    assert value(s, "orchestrion_steps_total", kind="model", status="completed") == 2
    assert value(s, "orchestrion_steps_total", kind="tool", status="completed") == 1
    assert value(s, "orchestrion_step_duration_seconds_count", kind="model") == 2
    usage = result.usage
    assert value(
        s, "orchestrion_tokens_total", model="test:schema", agent="bank", type="input"
    ) == (usage.input_tokens)
    assert value(
        s, "orchestrion_tokens_total", model="test:schema", agent="bank", type="output"
    ) == (usage.output_tokens)
    genai = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "test",
        "gen_ai_request_model": "schema",
    }
    assert value(s, "gen_ai_client_operation_duration_seconds_count", **genai) == 2
    assert value(s, "gen_ai_client_token_usage_count", **genai, gen_ai_token_type="input") == 2
    assert value(s, "gen_ai_client_token_usage_sum", **genai, gen_ai_token_type="output") == (
        usage.output_tokens
    )
    assert not any(result.run_id in str(labels) for _, labels in s)  # never a run id


async def test_replayed_steps_are_not_counted_again(metrics: Metrics, store: Store) -> None:
    agent = payer_that_dies_once()
    with pytest.raises(Crash):
        await Runtime(store, metrics=metrics).run(agent, "pay", run_id="r1")
    await Runtime(store, metrics=metrics).resume("r1", runnable=agent)
    s = scrape(metrics.registry)
    assert value(s, "orchestrion_steps_total", kind="model", status="completed") == 2  # not 3
    assert value(s, "orchestrion_steps_total", kind="tool", status="completed") == 1
    assert value(s, "orchestrion_runs_started_total", runnable="payer", resumed="true") == 1
    # The crashed execution never finished: started twice, finished once.
    assert value(s, "orchestrion_runs_started_total", runnable="payer", resumed="false") == 1
    assert value(s, "orchestrion_runs_finished_total", runnable="payer", status="completed") == 1
    assert value(s, "orchestrion_runs_finished_total", runnable="payer", status="failed") == 0


async def test_retries_fallbacks_breakers_and_loops_are_counted(metrics: Metrics) -> None:
    primary = FaultyModel(
        FunctionModel(lambda r: "never", name="primary"),
        Faults.script([ServerError(503)] * 3),
    )
    backup = FunctionModel(lambda r: "from backup", name="backup")
    policy = Policy(
        retry=Retry(attempts=2, initial=0.001, jitter=0),
        fallback=[backup],
        breaker=Breaker(failures=2, window=60, cooldown=60),
    )
    async with Runtime("memory://", metrics=metrics) as runtime:
        result = await runtime.run(Agent(name="a", model=primary, policy=policy), "go")
        assert result.output == "from backup"
        looping = Agent(
            name="looper",
            model=ScriptedModel([call("get_balance", {"account": "x"})] * 3 + ["stop"]),
            tools=[get_balance],
            loop_guard=LoopGuard(repeats=2, policy="warn"),
        )
        await runtime.run(looping, "go")
    s = scrape(metrics.registry)
    assert value(s, "orchestrion_retries_total", kind="model", target="test:primary") == 1
    assert value(s, "orchestrion_fallbacks_total", failed="test:primary", used="test:backup") == 1
    assert (
        value(s, "orchestrion_breaker_transitions_total", breaker="test:primary", state="open") == 1
    )
    assert value(s, "orchestrion_breaker_state", breaker="test:primary") == 2
    assert value(s, "orchestrion_loop_guard_triggers_total", kind="tool", action="warn") >= 1
    assert value(s, "orchestrion_tokens_total", model="test:backup", agent="a", type="output") > 0


async def test_an_interrupt_is_counted_when_the_run_stops_for_it(metrics: Metrics) -> None:
    agent = approving_agent()
    async with Runtime("memory://", metrics=metrics) as runtime:
        waiting = await runtime.run(agent, "go")
    s = scrape(metrics.registry)
    assert waiting.status is RunStatus.INTERRUPTED
    assert value(s, "orchestrion_interrupts_total", kind="approval") == 1
    assert value(s, "orchestrion_runs_finished_total", runnable="a", status="interrupted") == 1


def test_one_registry_has_one_set_of_metrics() -> None:
    registry = CollectorRegistry()
    assert Metrics.of(registry) is Metrics.of(registry)
    assert Metrics.of(CollectorRegistry()) is not Metrics.of(registry)


async def test_the_stores_counts_of_a_queues_runs_become_gauges(
    metrics: Metrics, store: Store
) -> None:
    runtime = Runtime(store)
    for _ in range(2):
        await runtime.submit("tests.workers.target:agent", "x", queue="q")
    await runtime.submit("tests.workers.target:agent", "x", queue="other")
    counts = await store.run_counts(["q"])  # type: ignore[attr-defined]
    assert counts == {("queued", "q"): 2}
    metrics.polled(["q"], counts)
    metrics.polled(["q", "other"], await store.run_counts(["q", "other"]))  # type: ignore[attr-defined]
    s = scrape(metrics.registry)
    assert value(s, "orchestrion_runs", status="queued", queue="q") == 2
    assert value(s, "orchestrion_runs", status="queued", queue="other") == 1
    assert ("orchestrion_runs", frozenset({("status", "running"), ("queue", "q")})) in s  # a 0
    assert await store.run_counts([]) == {}  # type: ignore[attr-defined]


def test_the_grafana_dashboard_queries_only_metrics_that_exist(metrics: Metrics) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana" / "orchestrion.json").read_text()
    )
    exposed = {
        name
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    labels = {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"}
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:orchestrion|gen_ai)_\w+", target["expr"])
        if name not in labels
    }
    assert queried and queried <= exposed, queried - exposed
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


async def test_an_interrupt_still_waiting_after_a_resume_is_not_counted_again(
    metrics: Metrics,
) -> None:
    agent = approving_agent()
    async with Runtime("memory://", metrics=metrics) as runtime:
        waiting = await runtime.run(agent, "go")
        again = await runtime.resume(waiting.run_id)  # no answer: it waits again
    assert again.status is RunStatus.INTERRUPTED
    s = scrape(metrics.registry)
    assert value(s, "orchestrion_interrupts_total", kind="approval") == 1
    assert value(s, "orchestrion_runs_finished_total", runnable="a", status="interrupted") == 2
