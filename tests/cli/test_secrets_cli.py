"""The real CLI, in a subprocess with secrets in its environment: neither the live
view, nor the printed errors, nor `show`, nor a traceback prints them."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import uuid
from pathlib import Path

import pytest

TARGETS = Path(__file__).parent / "secret_targets.py"
pytestmark = pytest.mark.slow


@pytest.fixture
def key() -> str:
    """An API key in `ACME_CREDENTIAL`: a name the redaction before issue 9 missed."""
    return f"acme-live-{uuid.uuid4().hex}"


@pytest.fixture
def env(key: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ACME_CREDENTIAL": key,
        "COLUMNS": "400",  # wide enough that nothing is cut off before the secret
        "ORCHESTRION_STORE": f"sqlite:///{tmp_path / 'runs.db'}",
    }


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrion", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin and stdout, as a person would
    (so it shows the live view); everything it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 400, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrion", *args],
        stdin=follower, stdout=follower, stderr=follower, env=env,
    ) as process:  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=60)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_the_live_view_does_not_print_an_api_key(key: str, env: dict[str, str]) -> None:
    code, screen = on_a_terminal("run", f"{TARGETS}:cashier", "--run-id", "live-1", env=env)
    assert code == 1, screen
    # The live view's last frame shows the fallback and the failed tool call, each with
    # its error; the run's report below repeats the last.
    assert "test:primary -> test:scripted: ModelError" in screen
    assert screen.count("<redacted>") >= 3, screen
    assert key not in screen


def test_printed_errors_and_show_do_not_print_an_api_key(key: str, env: dict[str, str]) -> None:
    run = cli("run", f"{TARGETS}:cashier", "--run-id", "plain-1", env=env)
    assert run.returncode == 1, run.stderr
    show = cli("show", "plain-1", env=env)
    flat = cli("show", "plain-1", "--flat", env=env)
    as_json = cli("show", "plain-1", "--json", env=env)
    for done in (run, show, flat, as_json):
        assert "<redacted>" in done.stdout, done.stdout + done.stderr
        assert key not in done.stdout + done.stderr


def test_a_store_url_error_does_not_print_the_password(env: dict[str, str]) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    done = cli(
        "run", f"{TARGETS}:cashier", "--store", f"mysql://admin:{password}@db:5432/app", env=env
    )
    assert done.returncode == 2
    assert "Unknown store scheme 'mysql'" in done.stderr
    assert password not in done.stdout + done.stderr


def test_a_traceback_does_not_print_a_database_password(env: dict[str, str]) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    env = {**env, "DATABASE_URL": f"postgresql://app:{password}@db:5432/app"}
    done = cli("run", f"{TARGETS}:migrate", env=env)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: cannot migrate" in done.stderr
    assert password not in done.stdout + done.stderr


def test_json_logs_carry_the_run_the_step_and_the_trace_but_no_api_key(
    key: str, env: dict[str, str]
) -> None:
    import json

    traced = {**env, "ORCHESTRION_INSTRUMENT": "1", "OTEL_TRACES_EXPORTER": "none"}
    done = cli(
        "--log-format", "json", "--log-level", "debug",
        "run", f"{TARGETS}:cashier", "--run-id", "logged-1", env=traced,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert key not in done.stderr and key not in done.stdout
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    run = [r for r in records if r["logger"] == "orchestrion.run"]
    assert {r["run_id"] for r in run} == {"logged-1"}
    assert run[0]["message"] == "run logged-1 started (cashier)"
    fallback = next(r for r in run if "takes over" in r["message"])
    assert fallback["level"] == "WARNING"
    assert fallback["step_key"] == "cashier/turn-1/model" and fallback["agent"] == "cashier"
    assert len(fallback["trace_id"]) == 32 and len(fallback["span_id"]) == 16
    retried = next(r for r in run if "retried in" in r["message"])
    assert retried["step_key"] == "cashier/turn-1/tool/charge#c1"
    assert "[REDACTED]" in retried["message"] or "<redacted>" in retried["message"]
    assert run[-1]["level"] == "WARNING" and run[-1]["message"].startswith("run logged-1 failed")


def test_nothing_is_logged_unless_asked(key: str, env: dict[str, str]) -> None:
    done = cli("run", f"{TARGETS}:cashier", "--run-id", "quiet-1", "--json", env=env)
    assert done.returncode == 1
    assert "orchestrion.run" not in done.stderr and "takes over" not in done.stderr
