"""Crash safety, proven with real processes: SIGKILL a CLI run, resume it, count
effects; on a SQLite file and on the local PostgreSQL (`process_store_url`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TARGET = str(Path(__file__).parent / "crash" / "target.py") + ":agent"
pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrion", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_and_kill(tmp_path: Path, store: str, hang: dict[str, str]) -> tuple[dict[str, str], str]:
    """Start a run that hangs where asked, wait until it hangs, SIGKILL it."""
    effects = tmp_path / "effects.jsonl"
    # A short lease: the killed process's claim ends within a second.
    env = {**os.environ, "CRASH_EFFECTS": str(effects), "ORCHESTRION_LEASE_TTL": "1"}
    stderr = tmp_path / "stderr.txt"
    with (
        stderr.open("w") as err,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrion",
                "run",
                TARGET,
                "--run-id",
                "crash-1",
                "--store",
                store,
                "--json",
            ],
            env={**env, **hang},
            stdout=subprocess.DEVNULL,
            stderr=err,
        ) as proc,
    ):
        deadline = time.monotonic() + 30
        while not any(e["event"] == "hanging" for e in events(effects)):
            if proc.poll() is not None:
                pytest.fail(f"run exited early ({proc.returncode}): {stderr.read_text()}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("run never reached the hang point")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return env, store


def resume(env: dict[str, str], store: str) -> dict[str, object]:
    done = cli("resume", "crash-1", "--store", store, "--json", "--wait", "20", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["output"] == "paid 3 instalments"
    return result


def test_kill_after_a_write_completed_resumes_without_repeating_it(
    tmp_path: Path, process_store_url: str
) -> None:
    env, store = start_and_kill(tmp_path, process_store_url, {"CRASH_HANG_AFTER": "2"})
    before = [e for e in events(tmp_path / "effects.jsonl") if e["event"] == "effect"]
    assert [e["n"] for e in before] == [1, 2]

    resume(env, store)

    log = events(tmp_path / "effects.jsonl")
    assert [e["n"] for e in log if e["event"] == "effect"] == [1, 2, 3]
    assert [e["n"] for e in log if e["event"] == "start"] == [1, 2, 3]
    shown = json.loads(cli("show", "crash-1", "--store", store, "--json", env=env).stdout)
    assert shown["status"] == "completed"
    assert [s["key"] for s in shown["steps"] if s["kind"] == "tool"] == [
        "payer/turn-1/tool/pay#call_1",
        "payer/turn-2/tool/pay#call_2",
        "payer/turn-3/tool/pay#call_3",
    ]


def test_kill_inside_a_write_reexecutes_it_with_the_same_idempotency_key(
    tmp_path: Path, process_store_url: str
) -> None:
    env, store = start_and_kill(tmp_path, process_store_url, {"CRASH_HANG_IN_WRITE": "2"})

    resume(env, store)

    log = events(tmp_path / "effects.jsonl")
    starts = [e for e in log if e["event"] == "start" and e["n"] == 2]
    assert len(starts) == 2, "the interrupted write runs again on resume"
    assert starts[0]["key"] == starts[1]["key"], "with the same idempotency key"
    assert [e["n"] for e in log if e["event"] == "effect"] == [1, 2, 3]
    assert [e["n"] for e in log if e["event"] == "start"].count(1) == 1
