"""Tokens and cost where people look: `show` (per step, per agent), `runs`, and
`usage` over a window; the JSON of `run`, `runs` and `show` in one shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrion import Agent, Price, Runtime, Supervisor
from orchestrion.cli.usage import since_epoch
from orchestrion.errors import UserError
from orchestrion.testing import ScriptedModel, call

from .test_cli import TARGETS, invoke, run_json

PRICES = {"test:scripted": Price(input=1_000, output=2_000)}
"""$0.001 an input token and $0.002 an output token: costs that show."""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'costs.db'}"


def team() -> Supervisor:
    teller = Agent(
        name="teller",
        model=ScriptedModel([call("delegate_to_clerk", {"task": "count"}), "counted 3"]),
    )
    clerk = Agent(name="clerk", model=ScriptedModel(["3"]))
    return Supervisor(name="bank", manager=teller, workers=[clerk])


def priced_run(store_url: str, run_id: str) -> None:
    async def go() -> None:
        async with Runtime(store_url, prices=PRICES) as runtime:
            await runtime.run(team(), "count them", run_id=run_id)

    asyncio.run(go())


def test_run_runs_and_show_print_one_shape_of_json(store_url: str) -> None:
    code, ran = run_json(store_url, "echo", "--input", "hi", "--run-id", "e1")
    assert code == 0
    assert set(ran) == {"id", "status", "output", "error", "interrupts", "usage", "partial"}
    usage_keys = {"input_tokens", "output_tokens", "requests", "cost_usd"}
    assert ran["id"] == "e1" and set(ran["usage"]) == usage_keys
    _, out, _ = invoke("runs", "--store", store_url, "--json")
    [listed] = json.loads(out)
    _, out, _ = invoke("show", "e1", "--store", store_url, "--json")
    shown = json.loads(out)
    assert listed["id"] == shown["id"] == "e1"
    assert listed["usage"] == shown["usage"] == ran["usage"]
    assert set(shown) - set(listed) == {"steps", "by_agent"}
    [step] = shown["steps"]
    assert step["agent"] == "echo" and step["model"] == "test:function"
    assert step["usage"] == {**ran["usage"], "cost_usd": 0.0}
    assert step["duration_ms"] >= 0


def test_show_gives_each_model_steps_tokens_and_cost_and_each_agents_totals(
    store_url: str,
) -> None:
    priced_run(store_url, "b1")
    code, out, _ = invoke("show", "b1", "--store", store_url, "--json")
    assert code == 0
    shown = json.loads(out)
    models = [s for s in shown["steps"] if s["kind"] == "model"]
    assert [(s["agent"], s["model"]) for s in models] == [
        ("teller", "test:scripted"),
        ("clerk", "test:scripted"),
        ("teller", "test:scripted"),
    ]
    for s in models:
        u = s["usage"]
        assert u["cost_usd"] == pytest.approx(
            u["input_tokens"] * 0.001 + u["output_tokens"] * 0.002
        )
    by_agent = {row["agent"]: row for row in shown["by_agent"]}
    assert by_agent["teller"]["calls"] == 2 and by_agent["clerk"]["calls"] == 1
    total = sum(row["usage"]["cost_usd"] for row in shown["by_agent"])
    assert total == pytest.approx(shown["usage"]["cost_usd"])
    code, out, _ = invoke("show", "b1", "--store", store_url)
    flat = " ".join(out.split())
    assert "model calls by agent" in flat
    first = models[0]["usage"]
    assert f"({first['input_tokens']} in, {first['output_tokens']} out, $" in flat
    _, out, _ = invoke("runs", "--store", store_url)
    assert "cost" in out and "$" in out


def test_usage_sums_tokens_and_cost_by_agent_and_model_over_a_window(store_url: str) -> None:
    priced_run(store_url, "b1")
    priced_run(store_url, "b2")
    code, out, err = invoke("usage", "--since", "1h", "--store", store_url, "--json")
    assert code == 0, err
    summed = json.loads(out)
    assert summed["runs"] == 2 and summed["more"] is False
    rows = {(r["agent"], r["model"]): r for r in summed["by_agent"]}
    assert rows[("teller", "test:scripted")]["calls"] == 4
    assert rows[("clerk", "test:scripted")]["calls"] == 2
    one = json.loads(invoke("show", "b1", "--store", store_url, "--json")[1])
    assert summed["total"]["cost_usd"] == pytest.approx(2 * one["usage"]["cost_usd"])
    assert summed["total"]["calls"] == 6
    _, out, _ = invoke("usage", "--since", "1h", "--limit", "1", "--store", store_url)
    assert "model calls of 1 run(s)" in out and "raise --limit" in out
    future = invoke("usage", "--since", "2999-01-01", "--store", store_url, "--json")[1]
    assert json.loads(future)["runs"] == 0


def test_a_window_is_a_duration_or_a_date() -> None:
    assert since_epoch("24h", 100_000.0) == 100_000.0 - 86_400
    assert since_epoch("30m", 10_000.0) == 10_000.0 - 1_800
    with pytest.raises(UserError, match="give a duration"):
        since_epoch("yesterday", 0.0)


def test_a_submitted_runs_json_names_its_id(store_url: str) -> None:
    code, out, err = invoke(
        "submit", f"{TARGETS}:echo", "--input", "x", "--store", store_url, "--json"
    )
    assert code == 0, err
    assert set(json.loads(out)) == {"id", "status", "queue"}
