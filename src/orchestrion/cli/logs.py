"""How the CLI and workers log, to stderr: `--log-format text` (a line a record) or
`json` (one JSON object a line: `time`, `level`, `logger`, `message`, and when
known `run_id`, `step_key`, `agent`, `trace_id`, `span_id`). Messages are redacted
(`orchestrion.redact`) in both."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from orchestrion.redact import redact

LogFormat = Literal["text", "json"]

_HANDLER = "orchestrion-cli"
"""The name of the handler this module installs (replaced if configured again)."""


class TextLogFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLogFormatter(JsonFormatter):
    """One JSON object a record; the `extra` a record carries (`run_id`, ...) kept."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        trace_id, span_id = _current_span()
        if trace_id:
            log_data.setdefault("trace_id", trace_id)
            log_data.setdefault("span_id", span_id)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        for key, value in log_data.items():
            if isinstance(value, str):
                log_data[key] = redact(value)
        return log_data


def _current_span() -> tuple[str, str]:
    """The ids of the span current where the record is made ("" with no tracing)."""
    if "opentelemetry.trace" not in sys.modules:
        return "", ""  # nothing traces in this process: not imported for this
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def configure_logging(fmt: LogFormat, level: int | str = logging.INFO) -> None:
    """Log records of `level` and above to stderr in `fmt` (for the whole process)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    root.addHandler(handler)
    root.setLevel(level)
