"""JSON encoding for journals and wire payloads (orjson: fast, strict, no pickle)."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic

JSON = Any
"""A value made of dict, list, str, int, float, bool and None only."""


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def to_jsonable(value: Any) -> JSON:
    """Convert a tool or output value into plain JSON data."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    return orjson.loads(orjson.dumps(value, default=_default))
