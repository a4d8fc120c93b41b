"""`orchestrion graph TARGET` and `orchestrion show RUN --graph`: text on stdout,
pictures to files, and clear usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import TARGETS, invoke


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'graph.db'}"


def test_graph_prints_the_team_as_mermaid() -> None:
    code, out, _ = invoke("graph", f"{TARGETS}:desk")

    assert code == 0
    assert out.startswith("flowchart LR\n")
    assert 'subgraph c0["Supervisor desk"]' in out
    assert out.count('-->|"delegates"|') == 2
    assert '[["transfer<br/>write, approval"]]' in out


def test_graph_writes_a_picture_of_the_format_its_suffix_names(tmp_path: Path) -> None:
    code, _, err = invoke("graph", f"{TARGETS}:desk", "-o", str(tmp_path / "desk.svg"))

    assert code == 0 and "desk.svg" in err
    assert (tmp_path / "desk.svg").read_text().lstrip().startswith("<?xml")
    code, _, _ = invoke("graph", f"{TARGETS}:desk", "--format", "png", "-o", str(tmp_path / "p"))
    assert code == 0 and (tmp_path / "p").read_bytes().startswith(b"\x89PNG")


def test_graph_json_and_dot_hold_the_same_nodes() -> None:
    _, out, _ = invoke("graph", f"{TARGETS}:desk", "--format", "json")
    data = json.loads(out)
    assert json.loads(invoke("graph", f"{TARGETS}:desk", "--json")[1]) == data
    _, source, _ = invoke("graph", f"{TARGETS}:desk", "--format", "dot")

    assert data["kind"] == "structure" and data["title"] == "desk"
    assert {n["id"] for n in data["nodes"]} >= {"desk:lead", "desk:echo", "desk:mover"}
    assert source.startswith("digraph desk {")
    assert source.count(" -> ") == len(data["edges"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "gif"], "--format 'gif': use one of mermaid, dot, json, svg, png"),
        (["--format", "png"], "A PNG picture is binary: give --output FILE.png"),
        (["-o", "team.txt"], "--output 'team.txt': its suffix says no format"),
    ],
)
def test_a_bad_format_is_a_usage_error(args: list[str], message: str) -> None:
    code, out, err = invoke("graph", f"{TARGETS}:desk", *args)

    assert code == 2 and out == ""
    assert message in err


def test_graph_of_something_that_cannot_run_says_so() -> None:
    code, _, err = invoke("graph", f"{TARGETS}:not_runnable")

    assert code == 2 and "not something orchestrion can run" in err


def test_show_graph_draws_what_flowed_in_a_run(store_url: str, tmp_path: Path) -> None:
    code, _, _ = invoke("run", f"{TARGETS}:desk", "--store", store_url, "--run-id", "d1")
    assert code == 0

    code, out, _ = invoke("show", "d1", "--store", store_url, "--graph")
    assert code == 0 and out.startswith("flowchart LR\n  %% flow of desk, run d1\n")
    assert '-->|"delegates \N{MULTIPLICATION SIGN}1 · ' in out
    code, out, _ = invoke("show", "d1", "--store", store_url, "--graph", "--json")
    data = json.loads(out)
    edges = {(e["source"], e["target"], e["kind"]): e["flowed"] for e in data["edges"]}
    assert edges[("lead", "echo", "delegates")]["count"] == 1
    assert edges[("(input)", "lead", "input")]["model_calls"] == 3
    code, _, _ = invoke(
        "show", "d1", "--store", store_url, "--graph", "-o", str(tmp_path / "r.png")
    )
    assert code == 0 and (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "args",
    [["--format", "svg"], ["--graph", "--flat"], ["--graph", "--json", "--format", "dot"]],
)
def test_show_refuses_graph_options_that_do_not_go_together(
    store_url: str, args: list[str]
) -> None:
    invoke("run", f"{TARGETS}:echo", "--store", store_url, "--run-id", "e1")

    code, out, err = invoke("show", "e1", "--store", store_url, *args)

    assert code == 2 and out == ""
    assert "--graph" in err
