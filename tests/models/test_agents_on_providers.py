"""The whole loop on the providers' wire formats: the loan-payoff agent driven by
scripted OpenAI and Anthropic replies from a local fake server, approval included."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrion import Approve, RunStatus, Runtime, StepCompleted
from orchestrion.demos.loan_payoff import Bank, agent
from orchestrion.models.anthropic import AnthropicModel
from orchestrion.models.openai import OpenAIModel

from .fake_servers import (
    FakeServer,
    anthropic_message,
    openai_completion,
    openai_stream,
    text_block,
    tool_use_block,
)

PAY = {"loan_id": "car-7781", "amount": 4812.5, "from_account": "savings"}


def openai_script(server: FakeServer) -> None:
    server.reply(
        openai_completion(tool_calls=[("call_a", "get_loan", '{"customer_id": "cust-42"}')]),
        openai_completion(tool_calls=[("call_b", "get_balance", '{"account": "savings"}')]),
        openai_completion(tool_calls=[("call_c", "pay_loan", json.dumps(PAY))]),
        openai_completion(text="Paid 4,812.50; your car loan is closed."),
    )


async def test_loan_payoff_on_the_openai_wire_with_approval(server: FakeServer) -> None:
    openai_script(server)
    model = OpenAIModel("gpt-4.1-mini", base_url=f"{server.url}/v1", api_key="sk-test")
    bank = Bank()
    runtime = Runtime("memory://")
    try:
        first = await runtime.run(dataclasses.replace(agent, model=model), "Pay it off.", deps=bank)
        assert first.status is RunStatus.INTERRUPTED
        assert first.interrupts[0].payload["arguments"] == PAY
        assert len(server.requests) == 3 and bank.payments == {}

        done = await runtime.resume(first.run_id, {first.interrupts[0].id: Approve()}, deps=bank)
    finally:
        await model.aclose()

    assert done.output == "Paid 4,812.50; your car loan is closed."
    assert list(bank.payments.values()) == [4812.5]
    assert len(server.requests) == 4, "the three answered turns were not asked again"
    last = server.requests[-1].body
    tool_messages = [m for m in last["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b", "call_c"]
    assert "payment" in tool_messages[-1]["content"]
    assert {t["function"]["name"] for t in last["tools"]} == {"get_loan", "get_balance", "pay_loan"}
    assert done.usage.requests == 4


async def test_streamed_run_on_the_openai_wire(server: FakeServer) -> None:
    server.reply(
        openai_stream(tool_calls=[("call_a", "get_loan", ['{"customer', '_id": "cust-42"}'])]),
        openai_stream(text=["All ", "set."]),
    )
    model = OpenAIModel("gpt-4.1-mini", base_url=f"{server.url}/v1", api_key="sk-test")
    runtime = Runtime("memory://")
    try:
        events = [e async for e in runtime.stream(dataclasses.replace(agent, model=model), "Loan?")]
    finally:
        await model.aclose()
    tool_steps = [e for e in events if isinstance(e, StepCompleted) and e.kind == "tool"]
    assert [e.key for e in tool_steps] == ["loan-payoff/turn-1/tool/get_loan#call_a"]
    assert events[-1].result.output == "All set."


async def test_loan_payoff_on_the_anthropic_wire_with_rejection(server: FakeServer) -> None:
    server.reply(
        anthropic_message([tool_use_block("toolu_1", "get_loan", {"customer_id": "cust-42"})]),
        anthropic_message([tool_use_block("toolu_2", "get_balance", {"account": "savings"})]),
        anthropic_message([tool_use_block("toolu_3", "pay_loan", PAY)]),
        anthropic_message([text_block("Understood, no payment made.")]),
    )
    model = AnthropicModel("claude-sonnet-4-6", base_url=server.url, api_key="sk-ant-test")
    bank = Bank()
    runtime = Runtime("memory://")
    try:
        first = await runtime.run(dataclasses.replace(agent, model=model), "Pay it off.", deps=bank)
        iid = first.interrupts[0].id
        done = await runtime.resume(
            first.run_id, {iid: {"approved": False, "reason": "wait a month"}}, deps=bank
        )
    finally:
        await model.aclose()

    assert done.output == "Understood, no payment made."
    assert bank.payments == {}
    last = server.requests[-1].body
    results = [
        b
        for m in last["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert [r["tool_use_id"] for r in results] == ["toolu_1", "toolu_2", "toolu_3"]
    assert results[-1].get("is_error") is True
    assert "wait a month" in json.dumps(results[-1]["content"])


def test_demo_runs_on_a_configured_model(server: FakeServer, tmp_path: Path) -> None:
    """`ORCHESTRION_MODEL` switches the demo from the stand-in to a real provider."""
    openai_script(server)
    env = {
        **os.environ,
        "ORCHESTRION_MODEL": f"openai-compatible:{server.url}/v1#local-model",
        "OPENAI_COMPATIBLE_API_KEY": "local-key",
    }
    done = subprocess.run(
        [sys.executable, "-m", "orchestrion", "demo", "--store", f"sqlite:///{tmp_path / 'd.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "model: openai-compatible:" in out
    assert "Paid 4,812.50; your car loan is closed." in out
    assert "stand-in" not in out.split("model:")[-1]
    assert all(r.body["model"] == "local-model" for r in server.requests)
