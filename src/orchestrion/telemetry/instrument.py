"""`Instrumentation`: whether and how a runtime traces its runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrion.errors import UserError

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

INSTRUMENT_ENV = "ORCHESTRION_INSTRUMENT"
"""`1` traces the runs of a runtime made without `instrument=` (the CLI's, workers')."""
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""OpenTelemetry's switch for recording GenAI message content, honoured here too."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True, kw_only=True, slots=True)
class Instrumentation:
    """How a runtime traces its runs with OpenTelemetry (`Runtime(instrument=...)`)."""

    tracer_provider: TracerProvider | None = None
    """Where spans go; None: OpenTelemetry's global provider (set by your setup or by
    `opentelemetry-instrument`)."""
    capture_content: bool = False
    """Record prompts, answers, tool arguments and results on spans (always through
    the secret redactor). Off by default: they are the users' data."""


def instrumentation(
    given: bool | Instrumentation | None, env: Mapping[str, str] = os.environ
) -> Instrumentation | None:
    """What `Runtime(instrument=given)` traces with; None for no tracing. Not given,
    `ORCHESTRION_INSTRUMENT` decides."""
    if isinstance(given, Instrumentation):
        return given
    if given is None:
        given = flag(env, INSTRUMENT_ENV)
    if not given:
        return None
    return Instrumentation(capture_content=_captures(env.get(CAPTURE_ENV, "")))


def _captures(value: str) -> bool:
    """OpenTelemetry's content switch: a boolean, or (its newer GenAI utilities) a mode,
    of which those that put content on spans count here; anything else is off."""
    return value.strip().lower() in (*_TRUE, "span_only", "span_and_event")


def flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UserError(f"{name}={env[name]!r}: set it to 1 (on) or 0 (off).")
