"""Bad input at the CLI: usage errors for bytes that are not UTF-8, text printed as
text (never as markup), lines that are not wrapped when the output is not a terminal,
and where a tool's exception came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrion.cli import app

from .bad_targets import LONG, MARKUP

HERE = Path(__file__).parent
TARGETS = HERE / "targets.py"
BAD = HERE / "bad_targets.py"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args: str, columns: str | None = "200") -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": columns})
    return result.exit_code, result.stdout, result.stderr


def cli(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a process, its output a pipe (not a terminal), no COLUMNS set."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "orchestrion", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_input_that_is_not_utf8_is_a_usage_error(store_url: str) -> None:
    done = cli("run", f"{TARGETS}:echo", "--store", store_url, "--input", b"caf\xe9 \xff")
    assert done.returncode == 2, done.stderr
    assert "--input is not valid UTF-8 (byte 0xe9 at character 3)" in done.stderr
    assert "Traceback" not in done.stderr
    listed = cli("runs", "--store", store_url, "--json")
    assert listed.returncode == 2 and "does not exist" in listed.stderr  # nothing was created


def test_an_error_message_that_looks_like_markup_prints_literally(store_url: str) -> None:
    code, out, err = invoke("run", f"{BAD}:markup", "--store", store_url)
    assert code == 1, err
    assert f"ToolError: Tool 'scrape' raised: ValueError: {MARKUP}" in out


def test_partial_results_that_look_like_markup_print_literally(store_url: str) -> None:
    code, out, err = invoke("run", f"{BAD}:stopping", "--store", store_url)
    assert code == 4, err
    assert f"BudgetExceeded: stopped at {MARKUP}" in out
    assert f"finished before the stop: stopping/sayer: {MARKUP}" in out


def test_show_prints_markup_in_errors_literally(store_url: str) -> None:
    invoke("run", f"{BAD}:markup", "--store", store_url, "--run-id", "m1")
    for flat in ([], ["--flat"]):
        code, out, err = invoke("show", "m1", "--store", store_url, *flat)
        assert code == 0, err
        assert MARKUP in out


def test_ids_and_commands_stay_on_one_line_when_not_on_a_terminal(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    store_url = f"sqlite:///{deep / 'runs.db'}"
    run_id = "r" * 100
    done = cli("run", f"{TARGETS}:mover", "--store", store_url, "--run-id", run_id)
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert f"run {run_id} interrupted" in lines
    answer = next(line for line in lines if line.startswith("Answer with:"))
    assert answer.startswith(f"Answer with: orchestrion resume {run_id} --approve i-")

    demo = cli("demo", "loan-team", "--store", store_url)
    assert demo.returncode == 0, demo.stderr
    inspect = next(line for line in demo.stdout.splitlines() if line.startswith("Inspect it"))
    assert inspect.startswith("Inspect it with: orchestrion show ")
    assert inspect.endswith(f" --store {store_url}")
    draw = next(line for line in demo.stdout.splitlines() if line.startswith("Draw what"))
    run = inspect.split()[5]
    assert (
        draw == f"Draw what flowed: orchestrion show {run} --store {store_url} --graph -o {run}.svg"
    )


def test_show_flat_never_breaks_a_key(store_url: str) -> None:
    code, _, err = invoke("run", f"{BAD}:long_names", "--store", store_url, "--run-id", "k1")
    assert code == 0, err
    key = f"{LONG}/turn-1/tool/{'t' * 64}#{'c' * 40}"
    code, out, _ = invoke("show", "k1", "--store", store_url, "--flat", columns="240")
    assert code == 0
    assert key in out  # the result gives way, not the key
    done = cli("show", "k1", "--store", store_url, "--flat")
    assert key in done.stdout
    assert "x x x x" in done.stdout  # not a terminal: nothing is cut


def test_show_json_gives_where_a_failing_tool_raised(store_url: str) -> None:
    invoke("run", f"{BAD}:markup", "--store", store_url, "--run-id", "w1")
    line = next(
        i
        for i, text in enumerate(BAD.read_text().splitlines(), 1)
        if text.endswith("# raised here")
    )
    where = f"{BAD}:{line}"
    code, out, _ = invoke("show", "w1", "--store", store_url, "--json")
    assert code == 0
    data = json.loads(out)
    [failed] = [s for s in data["steps"] if s["status"] == "failed"]
    assert failed["result"]["where"] == where
    assert failed["result"]["traceback"] == [
        f"{where} in scrape: raise ValueError(MARKUP)  # raised here"
    ]
    assert data["error"]["where"] == where

    code, out, _ = invoke("show", "w1", "--store", store_url)
    assert f"(at {where})" in out
    assert f"at {where}" in out.splitlines()[-1]
