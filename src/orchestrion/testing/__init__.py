"""Public fakes for testing agents and teams without a real model.

from orchestrion.testing import ScriptedModel, call
model = ScriptedModel([call("get_balance", {"account": "savings"}), "All done."])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from orchestrion.errors import FakeModelError
from orchestrion.models.base import GATE
from orchestrion.testing.faults import (
    ConnectionReset,
    Fault,
    Faults,
    FaultyModel,
    Hang,
    Latency,
    Malformed,
    RateLimited,
    ServerError,
    ServiceError,
    TimedOut,
    faulty_tool,
)
from orchestrion.testing.models import FunctionModel, ScriptedModel, TestModel, call, example

__all__ = [
    "ConnectionReset",
    "FakeModelError",
    "Fault",
    "Faults",
    "FaultyModel",
    "FunctionModel",
    "Hang",
    "Latency",
    "Malformed",
    "RateLimited",
    "ScriptedModel",
    "ServerError",
    "ServiceError",
    "TestModel",
    "TimedOut",
    "allow_model_requests",
    "call",
    "example",
    "faulty_tool",
    "forbid_model_requests",
]


@contextmanager
def _gate(allowed: bool) -> Iterator[None]:
    previous = GATE.allowed
    GATE.allowed = allowed
    try:
        yield
    finally:
        GATE.allowed = previous


def forbid_model_requests() -> None:
    """Make every real (network) model request fail with `ModelRequestsBlocked`
    from now on; call it in a conftest.py. Fakes are unaffected."""
    GATE.allowed = False


def allow_model_requests(allowed: bool = True) -> contextmanager:  # type: ignore[valid-type]
    """A context manager re-allowing (or forbidding) real model requests inside it."""
    return _gate(allowed)
