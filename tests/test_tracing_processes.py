"""One trace across a SIGKILL and a resume, with real processes: the CLI traced by
`ORCHESTRION_INSTRUMENT=1`, its spans exported as they end (console exporter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def spans_in(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter wrote (JSON objects, one after another)."""
    decoder = json.JSONDecoder()
    found, at = [], text.find("{")
    while at != -1:
        try:
            span, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(span, dict) and "context" in span:
            found.append(span)
        at = text.find("{", end)
    return found


def test_a_run_killed_mid_payment_and_resumed_elsewhere_is_one_trace(
    tmp_path: Path, process_store_url: str
) -> None:
    effects = tmp_path / "effects.jsonl"
    gate = tmp_path / "gate"
    env = {
        **os.environ,
        "ORCHESTRION_INSTRUMENT": "1",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "1",  # ms: a span goes out as it ends, before the kill
        "ORCHESTRION_LEASE_TTL": "1",
        "WK_EFFECTS": str(effects),
        "WK_GATE": str(gate),
    }
    command = [sys.executable, "-m", "orchestrion"]
    store = ["--store", process_store_url]
    killed_err = tmp_path / "killed.err"
    with killed_err.open("w") as err:
        owner = subprocess.Popen(
            [*command, "run", "tests.workers.target:agent", "--run-id", "r1", *store],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + 30
        while not (effects.exists() and '"start"' in effects.read_text()):
            assert owner.poll() is None, killed_err.read_text()
            assert time.monotonic() < deadline, killed_err.read_text()
            time.sleep(0.02)
        time.sleep(0.2)  # the spans that ended are exported
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    gate.touch()
    resumed = subprocess.run(
        [*command, "resume", "r1", "--wait", "10", "--json", *store],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    shown = subprocess.run(
        [*command, "show", "r1", "--json", *store], env=env, capture_output=True, text=True
    )
    trace_context = json.loads(shown.stdout)["trace"]

    before, after = spans_in(killed_err.read_text()), spans_in(resumed.stderr)
    names_before = sorted(s["name"] for s in before)
    # The killed process never ended its run's span or its payment's: only what ended.
    assert names_before == [
        "chat function",
        "chat function",
        "chat function",
        "execute_tool lookup",
        "execute_tool lookup",
    ]
    trace_ids = {s["context"]["trace_id"] for s in before + after}
    assert len(trace_ids) == 1
    _, trace_id, first_root, _ = trace_context.split("-")
    assert trace_ids == {f"0x{trace_id}"}
    [root] = [s for s in after if s["name"] == "invoke_agent payer"]
    assert root["parent_id"] == f"0x{first_root}"  # under the killed execution's span
    assert root["attributes"]["orchestrion.run.resumed"] is True
    # Nothing replayed is reported again: the payment (never finished) and the answer.
    assert sorted(s["name"] for s in after if s is not root) == [
        "chat function",
        "execute_tool pay",
    ]
    [pay] = [s for s in after if s["name"] == "execute_tool pay"]
    assert pay["attributes"]["orchestrion.tool.resumed"] is True
    assert [s["parent_id"] for s in before] == [before[0]["parent_id"]] * 5 and before[0][
        "parent_id"
    ] == f"0x{first_root}"
