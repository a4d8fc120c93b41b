"""The CLI: exit codes, JSON output, approvals, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrion.cli import app

TARGETS = Path(__file__).parent / "targets.py"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def run_json(store_url: str, target: str, *extra: str) -> tuple[int, dict]:
    code, out, err = invoke("run", f"{TARGETS}:{target}", "--store", store_url, "--json", *extra)
    assert out, err
    return code, json.loads(out)


def test_run_completed_exits_0_with_json_output(store_url: str) -> None:
    code, result = run_json(store_url, "echo", "--input", "hello", "--run-id", "r1")
    assert code == 0
    assert result["status"] == "completed"
    assert result["output"] == "echo: hello"
    assert result["id"] == "r1"


def test_json_input_object_is_passed_as_json(store_url: str) -> None:
    code, result = run_json(store_url, "echo", "--input", '{"a": 1}')
    assert code == 0
    assert result["output"] == 'echo: {"a":1}'


def test_run_failed_exits_1(store_url: str) -> None:
    code, result = run_json(store_url, "broken")
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"]["type"] == "MaxTurnsExceeded"


def test_approval_exits_3_then_resume_approves(store_url: str) -> None:
    code, result = run_json(store_url, "mover", "--run-id", "m1")
    assert code == 3
    [interrupt] = result["interrupts"]
    assert interrupt["kind"] == "approval"
    assert interrupt["payload"]["arguments"] == {"amount": 10}

    code, out, err = invoke(
        "resume", "m1", "--approve", interrupt["id"], "--store", store_url, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["output"] == "result: moved 10.0"


def test_reject_with_reason_reaches_the_model(store_url: str) -> None:
    _, result = run_json(store_url, "mover", "--run-id", "m2")
    iid = result["interrupts"][0]["id"]
    code, out, _ = invoke(
        "resume", "m2", "--reject", iid, "--reason", "too risky", "--store", store_url, "--json"
    )
    assert code == 0
    assert "too risky" in json.loads(out)["output"]


def test_free_answer(store_url: str) -> None:
    code, result = run_json(store_url, "asker", "--run-id", "a1")
    assert code == 3
    iid = result["interrupts"][0]["id"]
    code, out, _ = invoke(
        "resume", "a1", "--answer", iid, '"savings"', "--store", store_url, "--json"
    )
    assert code == 0
    assert json.loads(out)["output"] == "human said savings"


def test_wrong_answer_shape_is_a_usage_error_and_run_stays_waiting(store_url: str) -> None:
    _, result = run_json(store_url, "mover", "--run-id", "m3")
    iid = result["interrupts"][0]["id"]
    code, _, err = invoke(
        "resume", "m3", "--answer", iid, '{"approve": "yes"}', "--store", store_url
    )
    assert code == 2
    assert iid in err and "approved" in err
    code, out, _ = invoke("show", "m3", "--store", store_url, "--json")
    shown = json.loads(out)
    assert shown["status"] == "interrupted"
    assert [p["id"] for p in shown["pending"]] == [iid]


def test_runs_show_and_fork(store_url: str) -> None:
    run_json(store_url, "echo", "--input", "one", "--run-id", "e1")
    code, out, _ = invoke("runs", "--store", store_url, "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ["e1"]
    code, out, _ = invoke("show", "e1", "--store", store_url)
    assert code == 0
    assert "turn 1 model" in out and "completed" in out and "echo: one" in out
    code, out, _ = invoke("show", "e1", "--store", store_url, "--flat")  # full keys, for --at
    assert code == 0
    assert "echo/turn-1/model" in out
    code, out, _ = invoke(
        "fork",
        "e1",
        "--at",
        "echo/turn-1/model",
        "--edit",
        "edited",
        "--store",
        store_url,
        "--json",
    )
    assert code == 0
    assert json.loads(out)["output"] == "edited"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py:agent", "does not exist"),
        (f"{TARGETS}:nothing", "has no attribute 'nothing'"),
        (f"{TARGETS}:not_runnable", "not something orchestrion can run"),
        ("no_such_module_xyz:agent", "no module named 'no_such_module_xyz'"),
        ("agent-without-colon", "is not of the form"),
    ],
)
def test_bad_target_is_a_usage_error(target: str, message: str, store_url: str) -> None:
    code, _, err = invoke("run", target, "--store", store_url)
    assert code == 2
    assert message in err


def test_unknown_run_id_is_a_usage_error(store_url: str) -> None:
    run_json(store_url, "echo", "--run-id", "other")
    for command in ("show", "resume", "cancel"):
        code, _, err = invoke(command, "nope", "--store", store_url)
        assert code == 2
        assert "'nope'" in err and "orchestrion runs" in err


@pytest.mark.parametrize("command", [["runs"], ["show", "r1"], ["show", "r1", "--json"]])
def test_reading_a_store_that_does_not_exist_names_it_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo" / "runs.db"
    code, _, err = invoke(*command, "--store", f"sqlite:///{missing}")
    assert code == 2
    assert str(missing) in err and "does not exist" in err
    assert not (tmp_path / "typo").exists()


def test_resuming_a_completed_run_is_a_usage_error(store_url: str) -> None:
    run_json(store_url, "echo", "--run-id", "done1")
    code, _, err = invoke("resume", "done1", "--store", store_url)
    assert code == 2
    assert "completed" in err and "fork" in err


def test_corrupted_database_names_the_file(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    code, _, err = invoke("runs", "--store", f"sqlite:///{db}")
    assert code == 1
    assert str(db) in err.replace("\n", "")


@pytest.fixture
def fresh_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demos' bank lives in the process: give each demo run its own."""
    from orchestrion.demos import loan_payoff

    monkeypatch.setattr(loan_payoff, "BANK", loan_payoff.Bank())


@pytest.mark.usefixtures("fresh_bank")
def test_demo_runs_the_loan_team_offline_and_auto_approves(tmp_path: Path) -> None:
    code, out, err = invoke("demo", "--store", f"sqlite:///{tmp_path / 'demo.db'}")
    assert code == 0, err
    assert "demo loan-team:" in out
    assert "auto-approving" in out
    flat = " ".join(out.split())
    assert "[stand-in model] Done: paid 4,812.50 from savings to loan car-7781" in flat


@pytest.mark.usefixtures("fresh_bank")
def test_the_single_agent_loan_payoff_demo_still_runs(tmp_path: Path) -> None:
    code, out, err = invoke("demo", "loan-payoff", "--store", f"sqlite:///{tmp_path / 'demo.db'}")
    assert code == 0, err
    assert "demo loan-payoff:" in out
    assert "[stand-in model] Done: paid 4,812.50" in " ".join(out.split())


def test_an_unknown_demo_is_a_usage_error_listing_the_demos() -> None:
    code, _, err = invoke("demo", "no-such-demo")
    assert code == 2
    assert "loan-team" in err and "incident-response" in err


def test_an_idempotency_key_shows_the_run_it_started(store_url: str) -> None:
    code, first = run_json(store_url, "echo", "--input", "hi", "--idempotency-key", "req-1")
    assert code == 0
    code, again = run_json(store_url, "echo", "--input", "hi", "--idempotency-key", "req-1")
    assert code == 0 and again["id"] == first["id"] and again["output"] == "echo: hi"
    code, out, _ = invoke("runs", "--store", store_url, "--json")
    assert len(json.loads(out)) == 1
    code, out, err = invoke(
        "run",
        f"{TARGETS}:echo",
        "--store",
        store_url,
        "--input",
        "other",
        "--idempotency-key",
        "req-1",
    )
    assert code == 2 and "A new request needs a new key" in out + err


def test_show_tells_the_failed_attempts_and_the_fallback(store_url: str) -> None:
    code, result = run_json(store_url, "flaky", "--run-id", "f1")
    assert code == 0 and result["output"] == "from the backup"
    code, out, _ = invoke("show", "f1", "--store", store_url)
    assert code == 0
    flat = " ".join(out.split())
    assert "after 2 failed attempts (last: ModelError: test:primary: HTTP 503 (injected))" in flat
    assert "answered by fallback test:backup" in flat
    code, out, _ = invoke("show", "f1", "--store", store_url, "--json")
    [step] = json.loads(out)["steps"]
    assert [a["attempt"] for a in step["attempts"]] == [1, 2]


def test_max_model_calls_stops_a_run_and_a_resume_raises_or_lifts_it(store_url: str) -> None:
    code, result = run_json(store_url, "looper", "--run-id", "l1", "--max-model-calls", "2")
    assert code == 4
    assert result["status"] == "stopped" and result["usage"]["requests"] == 2
    assert result["error"]["budget"] == "model_calls"
    assert "orchestrion resume l1 --max-model-calls 4" in result["error"]["message"]

    code, out, _ = invoke("resume", "l1", "--store", store_url, "--json", "--max-model-calls", "4")
    assert code == 4 and json.loads(out)["usage"]["requests"] == 4
    code, out, _ = invoke("resume", "l1", "--store", store_url, "--json", "--max-model-calls", "0")
    assert code == 0
    assert json.loads(out)["output"] == "done after 5 looks"
