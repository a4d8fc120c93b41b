"""What the `orchestrion` commands share: their common options, and how they fail."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.text import Text

from orchestrion._json import JSON, loads
from orchestrion.budget import DEFAULT_MODEL_CALLS
from orchestrion.cli.logs import configure_logging
from orchestrion.cli.render import console
from orchestrion.errors import OrchestrionError, RunBusy, UserError
from orchestrion.redact import redact

USAGE_ERROR = 2
BUSY = 5

StoreOption = Annotated[
    str,
    typer.Option(
        "--store", envvar="ORCHESTRION_STORE", help="Store URL (memory://, sqlite:///path.db)."
    ),
]
BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        envvar="ORCHESTRION_BUS",
        help="Redis URL (redis://host:6379/0) where run events are published and followed.",
    ),
]
LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar="ORCHESTRION_LOG_FORMAT",
        help="Log to stderr as text or json (one JSON object a line, with run_id, step_key, "
        "agent, trace_id and span_id).",
    ),
]
LogLevelOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        envvar="ORCHESTRION_LOG_LEVEL",
        help="DEBUG, INFO (the default once logging is on), WARNING or ERROR.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LeaseOption = Annotated[
    float,
    typer.Option(
        "--lease-ttl",
        envvar="ORCHESTRION_LEASE_TTL",
        help="Seconds this process's claim on a run lasts unless renewed (renewed every "
        "third of it); after a crash, the run can be resumed elsewhere once it ends.",
    ),
]
MaxModelCallsOption = Annotated[
    int | None,
    typer.Option(
        "--max-model-calls",
        envvar="ORCHESTRION_MAX_MODEL_CALLS",
        min=0,
        help=f"Model calls the run may make in all (default {DEFAULT_MODEL_CALLS}; 0: no "
        "limit). A run stopped at the limit goes on when resumed with a larger one.",
    ),
]


def fail(message: str, code: int) -> NoReturn:
    console(stderr=True).print(
        Text.assemble(("error:", "red"), " ", redact(message)), soft_wrap=True
    )
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    try:
        yield
    except RunBusy as exc:
        fail(str(exc), BUSY)
    except UserError as exc:
        fail(str(exc), USAGE_ERROR)
    except OrchestrionError as exc:
        fail(f"{type(exc).__name__}: {exc}", 1)


def utf8(*args: tuple[str, str | None]) -> None:
    """Refuse arguments that are not UTF-8 (a usage error): Python hands their bad
    bytes over as lone surrogates, which no store holds and no model should read."""
    for flag, value in args:
        bad = next((i for i, c in enumerate(value or "") if "\ud800" <= c <= "\udfff"), None)
        if value is not None and bad is not None:
            code = ord(value[bad])
            what = f"byte 0x{code - 0xDC00:02x}" if code >= 0xDC80 else f"U+{code:04X}"
            fail(
                f"{flag} is not valid UTF-8 ({what} at character {bad}): give it as UTF-8 text.",
                USAGE_ERROR,
            )


def parse_input(text: str | None) -> JSON:
    """Text stays text, unless it is a JSON object or array."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value: JSON = loads(stripped)
        except ValueError as exc:
            fail(f"--input looks like JSON but does not parse: {exc}", USAGE_ERROR)
        return value
    return text


def logs(log_format: str | None, level: str | None = None) -> None:
    """Configure logging as `--log-format` and `--log-level` say (text at INFO when
    only one is given; nothing when neither is)."""
    if log_format is None and level is None:
        return
    log_format = log_format or "text"
    level = level or "INFO"
    if log_format not in ("text", "json"):
        raise UserError(f"--log-format {log_format!r}: give text or json.")
    name = level.upper()
    if not isinstance(logging.getLevelName(name), int):
        raise UserError(f"--log-level {level!r}: give DEBUG, INFO, WARNING or ERROR.")
    configure_logging("json" if log_format == "json" else "text", name)
