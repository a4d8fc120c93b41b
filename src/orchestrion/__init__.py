"""orchestrion: durable orchestration for teams of AI agents."""

from orchestrion.agent import Agent, ContextLimit
from orchestrion.budget import Budget
from orchestrion.context import RunContext
from orchestrion.engine.events import (
    Event,
    InterruptRequested,
    LoopDetected,
    ModelDelta,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from orchestrion.engine.interrupts import Approve, Interrupt, Reject
from orchestrion.engine.journal import RunRecord, RunStatus, StepStatus
from orchestrion.engine.result import RunResult
from orchestrion.engine.runtime import Runtime, StepInfo
from orchestrion.errors import (
    AnswerError,
    BudgetExceeded,
    DeterminismError,
    MaxTurnsExceeded,
    ModelError,
    ModelRequestsBlocked,
    OrchestrionError,
    OutputValidationError,
    RunError,
    RunFailed,
    RunNotFound,
    RunNotResumable,
    StoreError,
    TargetError,
    ToolError,
    UserError,
)
from orchestrion.guards import LoopGuard
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, Usage
from orchestrion.models.base import Model
from orchestrion.patterns import (
    BranchResult,
    Concurrent,
    GroupChat,
    Handoff,
    MaxTurns,
    PeerNetwork,
    Sequential,
    Supervisor,
    TextMention,
    TokenBudget,
    workflow,
)
from orchestrion.runnable import Runnable, Workflow
from orchestrion.tools.tool import ModelRetry, Tool, tool

__all__ = [
    "Agent",
    "AnswerError",
    "Approve",
    "BranchResult",
    "Budget",
    "BudgetExceeded",
    "Concurrent",
    "ContextLimit",
    "DeterminismError",
    "Event",
    "GroupChat",
    "Handoff",
    "Interrupt",
    "InterruptRequested",
    "LoopDetected",
    "LoopGuard",
    "MaxTurns",
    "MaxTurnsExceeded",
    "Model",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelRequestsBlocked",
    "ModelResponse",
    "ModelRetry",
    "OrchestrionError",
    "OutputValidationError",
    "PeerNetwork",
    "Reject",
    "RunContext",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunNotFound",
    "RunNotResumable",
    "RunRecord",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "Runnable",
    "Runtime",
    "Sequential",
    "StepCompleted",
    "StepFailed",
    "StepInfo",
    "StepStarted",
    "StepStatus",
    "StoreError",
    "Supervisor",
    "TargetError",
    "TextMention",
    "TokenBudget",
    "Tool",
    "ToolCall",
    "ToolError",
    "Usage",
    "UserError",
    "Workflow",
    "tool",
    "workflow",
]
