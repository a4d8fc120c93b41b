"""A graph of a team or of a run: nodes (the input, agents, tools, custom flows),
labelled edges between them, and clusters (patterns) that hold nodes.

`orchestrion.graph.structure` makes one from a team's definition,
`orchestrion.graph.flow` from a run's journal; `orchestrion.graph.render` draws
either as Mermaid text or, through Graphviz, as a picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orchestrion._json import JSON
from orchestrion.messages import Usage

NodeKind = Literal["input", "output", "agent", "tool", "workflow"]


@dataclass(slots=True)
class Flowed:
    """What went through a node or an edge in a run: how many times, what it cost."""

    count: int = 0
    usage: Usage = field(default_factory=Usage)
    errors: int = 0
    """Tool calls answered with an error (a node's), failed steps."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "count": self.count,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "model_calls": self.usage.requests,
            "cost_usd": self.usage.cost,
            "errors": self.errors,
        }


@dataclass(slots=True)
class Node:
    id: str
    kind: NodeKind
    label: str
    detail: str = ""
    """A second line: an agent's model, a tool's effect and approval."""
    cluster: str | None = None
    """The id of the cluster (pattern) the node sits in; None at the top."""
    flowed: Flowed | None = None
    """In a run's graph: the node's own model calls (an agent's), or calls (a tool's)."""

    def to_json(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "detail": self.detail,
            "cluster": self.cluster,
        }
        if self.flowed is not None:
            data["flowed"] = self.flowed.to_json()
        return data


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    kind: str
    """What flows: `delegates`, `hands off`, `messages`, `next`, `fans out`,
    `aggregates`, `selects`, `speaks after`, `input`, `output`, `calls`, `falls back`."""
    flowed: Flowed | None = None
    """In a run's graph: how often it happened, and what the work it passed on cost
    (everything done under it, nested delegations included)."""

    def to_json(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {"source": self.source, "target": self.target, "kind": self.kind}
        if self.flowed is not None:
            data["flowed"] = self.flowed.to_json()
        return data


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    label: str
    """The pattern's class and name: `Supervisor loan-team`."""
    parent: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {"id": self.id, "label": self.label, "parent": self.parent}


@dataclass(slots=True)
class Graph:
    """Nodes by id, in the order added; edges merged by (source, target, kind)."""

    title: str
    kind: Literal["structure", "flow"]
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], Edge] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)

    def node(self, node: Node) -> Node:
        """Add `node` unless one has its id; the node kept."""
        return self.nodes.setdefault(node.id, node)

    def edge(self, source: str, target: str, kind: str) -> Edge:
        """The edge from `source` to `target` of `kind`, added if new."""
        key = (source, target, kind)
        found = self.edges.get(key)
        if found is None:
            found = self.edges[key] = Edge(source, target, kind)
        return found

    def to_json(self) -> dict[str, JSON]:
        return {
            "title": self.title,
            "kind": self.kind,
            "clusters": [c.to_json() for c in self.clusters.values()],
            "nodes": [n.to_json() for n in self.nodes.values()],
            "edges": [e.to_json() for e in self.edges.values()],
        }
