"""Orchestration patterns: frozen definitions that orchestrate through the run
context only, so every one is durable, resumable, forkable, and can be a
member of any other."""

from orchestrion.patterns.concurrent import BranchResult, Concurrent
from orchestrion.patterns.sequential import Sequential
from orchestrion.patterns.supervisor import Supervisor
from orchestrion.patterns.workflow import FunctionWorkflow, workflow

__all__ = ["BranchResult", "Concurrent", "FunctionWorkflow", "Sequential", "Supervisor", "workflow"]
