"""Pictures of a team and of a run: `structure(team)` before it runs, `flow(title,
steps)` from a run's journal, drawn by `mermaid`, `dot` or `picture`."""

from orchestrion.graph.flow import flow
from orchestrion.graph.model import Cluster, Edge, Flowed, Graph, Node
from orchestrion.graph.render import dot, mermaid, picture
from orchestrion.graph.structure import structure

__all__ = [
    "Cluster",
    "Edge",
    "Flowed",
    "Graph",
    "Node",
    "dot",
    "flow",
    "mermaid",
    "picture",
    "structure",
]
