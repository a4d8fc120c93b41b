"""Drawing a graph: Mermaid text that parses back to the graph, DOT, and pictures
made by Graphviz's `dot` (which `make test` installs), written to files."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrion import Agent, Concurrent, Supervisor, tool
from orchestrion.errors import UserError
from orchestrion.graph import Cluster, Flowed, Graph, Node, dot, mermaid, picture, structure
from orchestrion.messages import Usage
from orchestrion.testing import ScriptedModel

SVG = "{http://www.w3.org/2000/svg}"


@tool(effect="write", approval=True)
def pay(amount: float) -> str:
    """Pay."""
    return "paid"


class OddModel(ScriptedModel):
    """A model whose name holds what Mermaid and DOT read as markup."""

    @property
    def name(self) -> str:
        return 'openai-compatible:http://h/v1#m "x" <b>\\n'


def team() -> Supervisor:
    fan = Concurrent(
        name="checks",
        branches=[Agent(name="a", model="test"), Agent(name="b", model=OddModel(["x"]))],
    )
    payer = Agent(name="payer", model="test", tools=[pay])
    return Supervisor(name="team", manager=Agent(name="lead", model="test"), workers=[fan, payer])


def test_mermaid_declares_every_node_once_in_nested_subgraphs_and_links_them() -> None:
    graph = structure(team())

    text = mermaid(graph)

    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    declared = re.findall(r"^\s+(n\d+)[\[(]", text, re.M)
    assert sorted(declared) == sorted(set(declared)) and len(declared) == len(graph.nodes)
    opened = [line.strip() for line in lines if line.strip().startswith("subgraph ")]
    assert len(opened) == len(graph.clusters) == sum(line.strip() == "end" for line in lines)
    assert opened[1].startswith('subgraph c1["Concurrent checks"]')
    links = re.findall(r"^\s+(n\d+) -\.?->\|\"([^\"]*)\"\| (n\d+)$", text, re.M)
    assert len(links) == len(graph.edges)
    assert {label for _, label, _ in links} == {"input", "output", "delegates", "calls"}
    assert {a for a, _, _ in links} | {b for _, _, b in links} <= set(declared)
    # a model name is shown as text: its quotes, brackets and `#` as entity codes
    assert "openai-compatible:http://h/v1#35;m #quot;x#quot; #lt;b#gt;\\n" in text


def test_dot_draws_an_svg_with_every_node_edge_and_cluster(tmp_path: Path) -> None:
    graph = structure(team())

    drawn = picture(graph, "svg")
    (tmp_path / "team.svg").write_bytes(drawn)

    root = ET.fromstring(drawn)
    groups = root.iter(f"{SVG}g")
    classes = [g.get("class") for g in groups]
    assert classes.count("node") == len(graph.nodes)
    assert classes.count("edge") == len(graph.edges)
    assert classes.count("cluster") == len(graph.clusters)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"Supervisor team", "Concurrent checks", "payer", "pay", "write, approval"} <= texts
    assert 'openai-compatible:http://h/v1#m "x" <b>\\n' in texts  # as text, not markup


def test_a_png_is_a_png(tmp_path: Path) -> None:
    drawn = picture(structure(team()), "png")

    (tmp_path / "team.png").write_bytes(drawn)
    assert drawn.startswith(b"\x89PNG\r\n\x1a\n") and len(drawn) > 1000


def test_dot_text_names_the_graph_and_escapes_labels() -> None:
    source = dot(structure(team())).source

    assert source.startswith("digraph team {")
    assert '\\"x\\"' in source and "\\\\n" in source  # quotes and backslashes kept as text


def test_without_graphviz_a_picture_fails_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(UserError, match=r"apt-get install graphviz.*--format mermaid"):
        picture(Graph(title="t", kind="structure"), "svg")


def test_text_that_could_end_a_line_or_start_markup_stays_text(tmp_path: Path) -> None:
    graph = Graph(title="run\nclick n1 call alert()", kind="flow")
    graph.node(Node("a", "agent", "a", detail="model\nclick n0 href &amp; <i>"))
    graph.node(Node("b", "agent", "b"))
    graph.edge("a", "b", "next").flowed = Flowed(1, Usage(5, 0, 0, 0.00001))

    text = mermaid(graph)

    lines = text.splitlines()
    assert len(lines) == 5  # the header, the comment, 2 nodes and 1 edge: no line more
    assert not [line for line in lines if line.strip().startswith("click")]
    assert "model click n0 href #38;amp; #lt;i#gt;" in text
    assert '"next \N{MULTIPLICATION SIGN}1 · 5 tokens · $0.00001"' in text  # shown without calls
    texts = {t.text for t in ET.fromstring(picture(graph, "svg")).iter(f"{SVG}text")}
    assert "model click n0 href &amp; <i>" in texts


def test_a_cluster_that_holds_no_node_is_not_drawn() -> None:
    graph = Graph(title="t", kind="flow")
    graph.clusters["a"] = Cluster("a", "a")
    graph.clusters["a:b"] = Cluster("a:b", "b", "a")
    graph.clusters["a:c"] = Cluster("a:c", "c", "a")  # nothing in it
    graph.node(Node("x", "agent", "x", cluster="a:b"))

    text = mermaid(graph)

    assert [line.strip()[:12] for line in text.splitlines() if "subgraph" in line] == [
        "subgraph c0[",
        "subgraph c1[",
    ]
    assert 'c2["c"]' not in text
    assert dot(graph).source.count("subgraph cluster_") == 2
