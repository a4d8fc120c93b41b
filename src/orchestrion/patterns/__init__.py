"""Orchestration patterns: frozen definitions that orchestrate through the run
context only, so every one is durable, resumable, forkable, and can be a
member of any other."""

from orchestrion.errors import (
    MaxHandoffsExceeded,
    NotEnoughBranches,
    PeerFailed,
    RoundsExceeded,
    UnknownSpeaker,
)
from orchestrion.patterns.concurrent import BranchResult, Concurrent
from orchestrion.patterns.group_chat import GroupChat
from orchestrion.patterns.handoff import Handoff, text_only
from orchestrion.patterns.peer_network import InProcessBus, Mail, PeerNetwork
from orchestrion.patterns.peer_runs import Mailboxes
from orchestrion.patterns.sequential import Sequential
from orchestrion.patterns.shape import Link, LinkKind, Shape, Shaped
from orchestrion.patterns.supervisor import Supervisor
from orchestrion.patterns.termination import (
    ChatState,
    Condition,
    CostBudget,
    MaxTurns,
    TextMention,
    Timeout,
    TokenBudget,
    When,
)
from orchestrion.patterns.workflow import FunctionWorkflow, workflow

__all__ = [
    "BranchResult",
    "ChatState",
    "Concurrent",
    "Condition",
    "CostBudget",
    "FunctionWorkflow",
    "GroupChat",
    "Handoff",
    "InProcessBus",
    "Link",
    "LinkKind",
    "Mail",
    "Mailboxes",
    "MaxHandoffsExceeded",
    "MaxTurns",
    "NotEnoughBranches",
    "PeerFailed",
    "PeerNetwork",
    "RoundsExceeded",
    "Sequential",
    "Shape",
    "Shaped",
    "Supervisor",
    "TextMention",
    "Timeout",
    "TokenBudget",
    "UnknownSpeaker",
    "When",
    "text_only",
    "workflow",
]
