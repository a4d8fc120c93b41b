"""A graph as Mermaid text (for Markdown, GitHub, the docs) or as Graphviz DOT and
a picture drawn from it by Graphviz's `dot` (SVG, PNG)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Literal

import graphviz

from orchestrion.errors import UserError
from orchestrion.graph.model import Edge, Flowed, Graph, Node
from orchestrion.messages import Usage

Picture = Literal["svg", "png"]

_TIMES = "\N{MULTIPLICATION SIGN}"
"""Before an edge's count (`delegates` x 2 reads `delegates` then this, then 2)."""
_DOTTED = {"calls", "falls back"}
"""Edges drawn dotted: what an agent may use, not work passed on."""
_MERMAID_SHAPES = {
    "input": '(["{}"])',
    "output": '(["{}"])',
    "agent": '["{}"]',
    "tool": '[["{}"]]',
    "workflow": '[/"{}"/]',
}
_DOT_SHAPES = {
    "input": {"shape": "oval"},
    "output": {"shape": "oval"},
    "agent": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e8f0fe"},
    "tool": {"shape": "component", "fontsize": "10"},
    "workflow": {"shape": "box3d"},
}


class _Nesting:
    """What each cluster (None: the top) holds: its nodes, and the clusters inside it
    that hold a node somewhere (an empty one is not drawn)."""

    def __init__(self, graph: Graph) -> None:
        self.nodes: dict[str | None, list[Node]] = defaultdict(list)
        for node in graph.nodes.values():
            self.nodes[node.cluster].append(node)
        held = set()
        for node in graph.nodes.values():
            at = node.cluster
            while at is not None and at not in held:
                held.add(at)
                at = graph.clusters[at].parent
        self.clusters: dict[str | None, list[str]] = defaultdict(list)
        for cluster in graph.clusters.values():
            if cluster.id in held:
                self.clusters[cluster.parent].append(cluster.id)


def mermaid(graph: Graph) -> str:
    """A Mermaid flowchart: nodes in nested subgraphs (the patterns), labelled edges."""
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart LR", f"  %% {graph.kind} of {_one_line(graph.title)}"]
    nest = _Nesting(graph)
    clusters = {c: f"c{i}" for i, c in enumerate(graph.clusters)}

    def block(cluster: str | None, indent: str) -> Iterator[str]:
        for node in nest.nodes[cluster]:
            shape = _MERMAID_SHAPES[node.kind].format(_mermaid_text(_lines(node), "<br/>"))
            yield f"{indent}{ids[node.id]}{shape}"
        for child in nest.clusters[cluster]:
            label = _mermaid_text([graph.clusters[child].label], "")
            yield f'{indent}subgraph {clusters[child]}["{label}"]'
            yield from block(child, indent + "  ")
            yield f"{indent}end"

    lines += block(None, "  ")
    for edge in graph.edges.values():
        arrow = "-.->" if edge.kind in _DOTTED else "-->"
        label = _mermaid_text(_edge_lines(edge), " · ")
        lines.append(f'  {ids[edge.source]} {arrow}|"{label}"| {ids[edge.target]}')
    return "\n".join(lines) + "\n"


def dot(graph: Graph) -> graphviz.Digraph:
    """The graph in Graphviz's language (`.source` is the DOT text)."""
    drawing = graphviz.Digraph(
        name=graph.title,
        graph_attr={"rankdir": "LR", "fontname": "Helvetica", "label": _dot_text([graph.title])},
        node_attr={"fontname": "Helvetica"},
        edge_attr={"fontname": "Helvetica", "fontsize": "10"},
    )
    nest = _Nesting(graph)
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    names = {c: f"cluster_{i}" for i, c in enumerate(graph.clusters)}

    def fill(into: graphviz.Digraph, cluster: str | None) -> None:
        for node in nest.nodes[cluster]:
            into.node(ids[node.id], label=_dot_text(_lines(node)), **_DOT_SHAPES[node.kind])
        for child in nest.clusters[cluster]:
            with into.subgraph(name=names[child]) as sub:
                sub.attr(label=_dot_text([graph.clusters[child].label]), style="rounded")
                fill(sub, child)

    fill(drawing, None)
    for edge in graph.edges.values():
        style = "dotted" if edge.kind in _DOTTED else "solid"
        drawing.edge(
            ids[edge.source], ids[edge.target], label=_dot_text(_edge_lines(edge)), style=style
        )
    return drawing


def picture(graph: Graph, format: Picture) -> bytes:
    """The graph drawn by Graphviz's `dot` program as SVG or PNG."""
    try:
        drawn: bytes = dot(graph).pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise UserError(
            "Drawing a picture needs Graphviz's `dot` program, which is not installed: "
            "`apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` (macOS), "
            "or ask for Mermaid text (--format mermaid) and draw it elsewhere."
        ) from None
    return drawn


def _lines(node: Node) -> list[str]:
    lines = [node.label]
    if node.detail:
        lines.append(node.detail)
    if node.flowed is not None and node.kind in ("agent", "tool"):
        lines.append(_flowed(node.flowed, "task" if node.kind == "agent" else "call"))
    return lines


def _edge_lines(edge: Edge) -> list[str]:
    if edge.flowed is None:
        return [edge.kind]
    return [f"{edge.kind} {_TIMES}{edge.flowed.count}", *_spent(edge.flowed.usage)]


def _flowed(flowed: Flowed, what: str) -> str:
    parts = [_plural(flowed.count, what)]
    if flowed.usage.requests:
        parts.append(_plural(flowed.usage.requests, "model call"))
    parts += _spent(flowed.usage)
    if flowed.errors:
        parts.append(f"{flowed.errors} failed")
    return " · ".join(parts)


def _spent(usage: Usage) -> list[str]:
    spent = [f"{usage.total_tokens:,} tokens"] if usage.total_tokens else []
    return [*spent, _dollars(usage.cost)] if usage.cost else spent


def _dollars(cost: float) -> str:
    """Cents for most costs; two significant digits for the tiny ones."""
    return f"${cost:,.4f}" if cost >= 0.001 else f"${cost:.8f}".rstrip("0")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


_MERMAID_CODES = str.maketrans(
    {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#38;", "\n": " ", "\r": " "}
)
"""Characters that Mermaid would read as markup (or as the end of a line), as its codes."""


def _mermaid_text(lines: list[str], joiner: str) -> str:
    """Text inside a Mermaid label's quotes: shown as written, never read as markup."""
    return joiner.join(line.translate(_MERMAID_CODES) for line in lines)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _dot_text(lines: list[str]) -> str:
    r"""A DOT label: shown as written (backslashes and `&` are not escapes), lines
    joined by `\n`."""
    return "\\n".join(_one_line(line).replace("\\", "\\\\").replace("&", "&amp;") for line in lines)
