"""orchestrion: durable orchestration for teams of AI agents."""

import logging
from typing import TYPE_CHECKING

from orchestrion._json import JSON, JSONInput
from orchestrion.agent import Agent, ContextLimit
from orchestrion.budget import Budget
from orchestrion.context import RunContext
from orchestrion.engine.breakers import Breakers, BreakerState, MemoryBreakers
from orchestrion.engine.events import (
    BreakerChanged,
    Event,
    FallbackUsed,
    InterruptRequested,
    LoopGuardTriggered,
    ModelDelta,
    Retrying,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
    Transferred,
)
from orchestrion.engine.interrupts import Approve, Interrupt, Reject
from orchestrion.engine.journal import RunRecord, RunStatus, StepStatus
from orchestrion.engine.result import RunResult, StepInfo
from orchestrion.engine.runtime import Runtime
from orchestrion.engine.worker import Worker
from orchestrion.errors import (
    AnswerError,
    BreakerOpen,
    BudgetExceeded,
    DeterminismError,
    LeaseLost,
    LoopDetected,
    MaxHandoffsExceeded,
    MaxTurnsExceeded,
    ModelError,
    ModelRequestsBlocked,
    NestingTooDeep,
    NoOutput,
    NotEnoughBranches,
    OrchestrionError,
    OutputValidationError,
    PeerFailed,
    RateLimited,
    RateLimitReached,
    RetryLater,
    RoundsExceeded,
    RunBusy,
    RunError,
    RunFailed,
    RunHalted,
    RunLimitReached,
    RunNotFound,
    RunNotResumable,
    StoreError,
    StoreNotFound,
    Suspension,
    TargetError,
    ToolError,
    UnknownSpeaker,
    UserError,
    WriteUncertain,
)
from orchestrion.guards import LoopGuard
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, Usage
from orchestrion.models.base import Model
from orchestrion.models.with_policy import with_policy
from orchestrion.patterns import (
    BranchResult,
    Concurrent,
    CostBudget,
    GroupChat,
    Handoff,
    MaxTurns,
    PeerNetwork,
    Sequential,
    Supervisor,
    TextMention,
    Timeout,
    TokenBudget,
    workflow,
)
from orchestrion.policy import Breaker, Policy, RateLimit, Retry
from orchestrion.pricing import Price, Prices
from orchestrion.redact import redact, register_secret
from orchestrion.runnable import Runnable, Workflow
from orchestrion.telemetry.instrument import Instrumentation
from orchestrion.tools.tool import ModelRetry, Tool, tool

__all__ = [
    "JSON",
    "Agent",
    "AnswerError",
    "Approve",
    "BranchResult",
    "Breaker",
    "BreakerChanged",
    "BreakerOpen",
    "BreakerState",
    "Breakers",
    "Budget",
    "BudgetExceeded",
    "Concurrent",
    "ContextLimit",
    "CostBudget",
    "DeterminismError",
    "Event",
    "FallbackUsed",
    "GroupChat",
    "Handoff",
    "Instrumentation",
    "Interrupt",
    "InterruptRequested",
    "JSONInput",
    "LeaseLost",
    "LoopDetected",
    "LoopGuard",
    "LoopGuardTriggered",
    "MaxHandoffsExceeded",
    "MaxTurns",
    "MaxTurnsExceeded",
    "MemoryBreakers",
    "Metrics",
    "Model",
    "ModelDelta",
    "ModelError",
    "ModelRequest",
    "ModelRequestsBlocked",
    "ModelResponse",
    "ModelRetry",
    "NestingTooDeep",
    "NoOutput",
    "NotEnoughBranches",
    "OrchestrionError",
    "OutputValidationError",
    "PeerFailed",
    "PeerNetwork",
    "Policy",
    "Price",
    "Prices",
    "RateLimit",
    "RateLimitReached",
    "RateLimited",
    "Reject",
    "Retry",
    "RetryLater",
    "Retrying",
    "RoundsExceeded",
    "RunBusy",
    "RunContext",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunHalted",
    "RunLimitReached",
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
    "StoreNotFound",
    "Supervisor",
    "Suspension",
    "TargetError",
    "TextMention",
    "Timeout",
    "TokenBudget",
    "Tool",
    "ToolCall",
    "ToolError",
    "Transferred",
    "UnknownSpeaker",
    "Usage",
    "UserError",
    "Worker",
    "Workflow",
    "WriteUncertain",
    "redact",
    "register_secret",
    "tool",
    "with_policy",
    "workflow",
]

logging.getLogger("orchestrion").addHandler(logging.NullHandler())  # silent until configured

if TYPE_CHECKING:
    from orchestrion.engine.metrics import Metrics


def __getattr__(name: str) -> object:
    if name == "Metrics":  # imports prometheus_client: only for those who ask for it
        from orchestrion.engine.metrics import Metrics

        return Metrics
    raise AttributeError(f"module 'orchestrion' has no attribute {name!r}")
