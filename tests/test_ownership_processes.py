"""One owner per run, proven with real processes on a real SQLite file and on the
local PostgreSQL: racing approvals, a SIGKILLed owner, a cancel from another
process, reads meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TARGET = str(Path(__file__).parent / "ownership" / "target.py")
pytestmark = pytest.mark.slow


class Bench:
    """A store, an effects log and the environment the CLI runs in."""

    def __init__(self, tmp_path: Path, store: str, **env: str) -> None:
        self.effects = tmp_path / "effects.jsonl"
        self.store = store
        self.env = {**os.environ, "OWN_EFFECTS": str(self.effects), "COLUMNS": "250", **env}

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrion", *args, "--store", self.store],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str, **env: str) -> tuple[int, str, str]:
        proc = self.start(*args, **env)
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err

    def json(self, *args: str) -> object:
        code, out, err = self.cli(*args, "--json")
        assert out, f"exit {code}: {err}"
        return json.loads(out)

    def log(self, event: str) -> list[dict[str, object]]:
        if not self.effects.exists():
            return []
        lines = self.effects.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == event]

    def wait_for(self, event: str, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while not self.log(event):
            if proc.poll() is not None:
                pytest.fail(f"exited early ({proc.returncode}): {proc.communicate()}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"never logged {event!r}: {proc.communicate()}")
            time.sleep(0.02)


@pytest.mark.parametrize("round_", range(3))
def test_racing_approvals_execute_the_write_once_and_end_completed(
    tmp_path: Path, process_store_url: str, round_: int
) -> None:
    bench = Bench(tmp_path, process_store_url, OWN_PAY_SLEEP="0.3")
    code, out, _ = bench.cli("run", f"{TARGET}:approved", "--run-id", "r1", "--json")
    assert code == 3
    approval = json.loads(out)["interrupts"][0]["id"]

    racers = [bench.start("resume", "r1", "--approve", approval, "--json") for _ in range(6)]
    outcomes = [(p.wait(timeout=60), *p.communicate()) for p in racers]

    codes = sorted(code for code, _, _ in outcomes)
    assert codes.count(0) == 1, outcomes
    # Each loser was refused before executing anything: busy (5) while the winner
    # held the run, or nothing to resume (2) once it had completed.
    assert set(codes[1:]) <= {2, 5}, outcomes
    for code, _, err in outcomes:
        if code == 5:
            assert "is being worked on by" in err and "--wait" in err
        elif code == 2:
            assert "completed; there is nothing to resume" in err
    assert len(bench.log("start")) == len(bench.log("effect")) == 1
    shown = bench.json("show", "r1")
    assert isinstance(shown, dict)
    assert shown["status"] == "completed" and shown["pending"] == []
    assert shown["lease"] is None and shown["orphaned_since"] is None


def test_a_killed_owner_is_refused_until_its_lease_ends_then_resumed_once(
    tmp_path: Path, process_store_url: str
) -> None:
    # The lease outlasts the two commands run while it is live, on a loaded machine too.
    bench = Bench(tmp_path, process_store_url, OWN_PAYMENTS="2", ORCHESTRION_LEASE_TTL="5")
    owner = bench.start(
        "run", f"{TARGET}:agent", "--run-id", "r1", "--json", OWN_GATE=str(tmp_path / "never")
    )
    bench.wait_for("waiting", owner)
    owner.send_signal(signal.SIGKILL)
    owner.communicate(timeout=10)

    code, _, err = bench.cli("resume", "r1")
    assert code == 5
    assert f":{owner.pid}:" in err and "lease ends at" in err
    listed = bench.json("runs")
    assert isinstance(listed, list)
    assert listed[0]["status"] == "running" and listed[0]["orphaned_since"] is None

    time.sleep(max(float(listed[0]["lease"]["until"]) - time.time(), 0) + 0.2)  # type: ignore[index, arg-type]
    listed = bench.json("runs")
    assert isinstance(listed, list) and listed[0]["orphaned_since"] is not None
    code, out, _ = bench.cli("runs")
    assert "orphaned since" in out
    code, out, _ = bench.cli("show", "r1")
    assert "orphaned since" in out and "orchestrion resume r1" in out

    code, out, err = bench.cli("resume", "r1", "--json", "--wait", "10")
    assert code == 0, err
    assert json.loads(out)["output"] == "paid 2 instalments"
    assert [e["n"] for e in bench.log("effect")] == [1, 2]


def test_cancel_from_another_process_stops_the_owner_before_its_next_write(
    tmp_path: Path, process_store_url: str
) -> None:
    gate = tmp_path / "gate"
    bench = Bench(tmp_path, process_store_url, OWN_PAYMENTS="3", OWN_GATE=str(gate))
    owner = bench.start("run", f"{TARGET}:agent", "--run-id", "r1", "--json")
    bench.wait_for("waiting", owner)  # payment 1 went out; the model is asked again

    # Reads work while the owner holds the run, and show who holds it.
    shown = bench.json("show", "r1")
    assert isinstance(shown, dict) and shown["status"] == "running"
    assert shown["lease"]["owner"].split(":")[1] == str(owner.pid)
    _, out, _ = bench.cli("show", "r1")
    assert "working: owned by" in out

    cancelled = bench.json("cancel", "r1")
    assert isinstance(cancelled, dict) and cancelled["status"] == "cancelled"
    gate.touch()  # the model answers "pay 2"; the owner must not pay

    out, err = owner.communicate(timeout=60)
    assert owner.returncode == 1, err
    assert json.loads(out)["status"] == "cancelled"
    assert [e["n"] for e in bench.log("start")] == [1]
    assert [e["n"] for e in bench.log("effect")] == [1]
    shown = bench.json("show", "r1")
    assert isinstance(shown, dict) and shown["status"] == "cancelled"
    assert [s["key"] for s in shown["steps"] if s["kind"] == "tool"] == [
        "payer/turn-1/tool/pay#call_1"
    ]
