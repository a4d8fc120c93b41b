"""`orchestrion graph TARGET` (a team before it runs) and `orchestrion show RUN --graph`
(what flowed in a run): Mermaid text, DOT, JSON, or a picture drawn by Graphviz."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, get_args

import typer

from orchestrion._json import dumps_str
from orchestrion.cli import common
from orchestrion.engine.targets import load_target
from orchestrion.errors import UserError
from orchestrion.graph import Graph, dot, mermaid, picture, structure

Format = Literal["mermaid", "dot", "json", "svg", "png"]
_SUFFIXES: dict[str, Format] = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".md": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".json": "json",
    ".svg": "svg",
    ".png": "png",
}

FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="mermaid (the default), dot, json, svg or png (svg and png are drawn by "
        "Graphviz's dot). Default: from --output's suffix.",
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the graph to this file (team.svg, team.png, team.mmd)."
    ),
]


def graph(
    target: Annotated[str, typer.Argument(help="path/to/file.py:team or package.module:team")],
    format: FormatOption = None,
    output: OutputOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """Draw TARGET's team before it runs: its patterns, agents and tools, and who may
    delegate, hand off or send messages to whom."""
    common.utf8(("TARGET", target))
    if as_json and format:
        common.fail("Give --json or --format, not both.", common.USAGE_ERROR)
    with common.errors():
        emit(structure(load_target(target)), "json" if as_json else format, output)


def emit(drawn: Graph, format: str | None, output: Path | None) -> None:
    """Print `drawn` (or write it to `output`) in `format`."""
    chosen = _format(format, output)
    if chosen == "png" and output is None:
        raise UserError("A PNG picture is binary: give --output FILE.png (or --format svg).")
    match chosen:
        case "mermaid":
            data = mermaid(drawn).encode()
        case "dot":
            data = dot(drawn).source.encode()
        case "json":
            data = (dumps_str(drawn.to_json()) + "\n").encode()
        case "svg" | "png":
            data = picture(drawn, chosen)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise UserError(f"Cannot write the graph to {str(output)!r}: {exc.strerror}.") from None
    print(f"wrote {output}", file=sys.stderr)


def _format(format: str | None, output: Path | None) -> Format:
    formats: tuple[Format, ...] = get_args(Format)
    if format is not None:
        for known in formats:
            if format == known:
                return known
        raise UserError(f"--format {format!r}: use one of {', '.join(formats)}.")
    if output is None:
        return "mermaid"
    found = _SUFFIXES.get(output.suffix.lower())
    if found is None:
        raise UserError(
            f"--output {str(output)!r}: its suffix says no format; give --format "
            f"({', '.join(formats)}) or a file ending in {', '.join(_SUFFIXES)}."
        )
    return found
