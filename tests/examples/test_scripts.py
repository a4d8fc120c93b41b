"""Every `examples/*.py` runs offline as a script, and every demo runs from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrion.cli import app
from orchestrion.demos import DEMOS, loan_payoff

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_is_an_example_for_each_team_demo() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"loan_team", "support_triage", "incident_response"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_an_example_runs_offline_as_a_script(script: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRION_MODEL"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "[stand-in model] " in done.stdout


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_each_demo_runs_from_the_cli(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loan_payoff, "BANK", loan_payoff.Bank())  # the demos' bank is per process
    result = CliRunner().invoke(app, ["demo", name, "--store", f"sqlite:///{tmp_path / 'd.db'}"])
    assert result.exit_code == 0, result.stderr
    assert f"demo {name}:" in result.stdout
    assert "[stand-in model] " in result.stdout
