"""JSON encoding for journals and wire payloads (orjson: fast, strict, no pickle).

`to_jsonable` and `json_text` are the one conversion of a value a run produced
(a tool's result, a step's value, a run's input or output) into what the
journal holds. The value used in the process is the converted one, so a run
sees the same thing first time and on replay, on every store:

- a lone surrogate (half an emoji from a cut stream) becomes U+FFFD, visibly:
  no store can hold it, and a JSON reader refuses it;
- so does the NUL character (U+0000): PostgreSQL's text and jsonb refuse it;
- a dict key that is an int, float, bool or None becomes its JSON text (`1` ->
  `"1"`, `True` -> `"true"`), as `json.dumps` writes it;
- NaN and Infinity (which orjson would silently write as `null`), integers
  beyond 64 bits (which orjson cannot write, and reads back as floats) and any
  other key are refused with `NotJSON`, naming where in the value they are
  (`result.items[3].price`): the journal would not hold the value exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import orjson
import pydantic

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
"""A value made of dict, list, str, int, float, bool and None only: what orchestrion
gives back (journal values, run inputs and outputs as stored)."""

JSONInput: TypeAlias = (
    Mapping[str, "JSONInput"]
    | Sequence["JSONInput"]
    | str
    | int
    | float
    | bool
    | pydantic.BaseModel
    | None
)
"""What orchestrion accepts where it journals a value (a run's input, an interrupt's
payload): JSON data with read-only container types, so a `dict[str, int]` or a tuple
fits (`dict` is invariant: a `dict[str, int]` is no `dict[str, JSON]`), and pydantic
models, which are journaled as their JSON. At run time a mapping must be a `dict` and
a sequence a `list` or `tuple`; `to_jsonable` says where a value is not JSON."""

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
"""The integers orjson writes exactly."""
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
"""Lone surrogates (when not paired) and NUL: what no store holds."""


class NotJSON(TypeError):
    """A value cannot be journaled as JSON. `path` says where in it (`result.a[2]`).

    A TypeError (as orjson's own errors are); the engine turns it into the
    orchestrion error of the place it came from (a tool's, a step's, an answer's)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


def dumps_str(value: Any) -> str:
    """JSON text of data known to be JSON (records, messages); see `json_text` for
    values a run produced."""
    return orjson.dumps(value, default=_default).decode()


def loads(data: bytes | str) -> Any:
    """Parsed JSON text; `Any` because callers know the shape they wrote (a record,
    a message), and `as_object` and friends check it where they do not."""
    return orjson.loads(data)


# -- reading JSON data whose shape the reader knows ----------------------------


def as_object(value: JSON, what: str = "value") -> dict[str, JSON]:
    """`value` as the JSON object it must be (a journaled record, a stored
    interrupt); a `TypeError` naming `what` if it is not (a corrupt store)."""
    if isinstance(value, dict):
        return value
    raise TypeError(f"{what} should be a JSON object, not {short_json(value)}")


def as_list(value: JSON, what: str = "value") -> list[JSON]:
    """`value` as the JSON array it must be; a `TypeError` naming `what` if not."""
    if isinstance(value, list):
        return value
    raise TypeError(f"{what} should be a JSON array, not {short_json(value)}")


def as_str(value: JSON, what: str = "value") -> str:
    """`value` as the string it must be; a `TypeError` naming `what` if not."""
    if isinstance(value, str):
        return value
    raise TypeError(f"{what} should be a string, not {short_json(value)}")


def as_number(value: JSON, what: str = "value") -> float:
    """`value` as the number it must be (an int is one; a bool is not); a
    `TypeError` naming `what` if not."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise TypeError(f"{what} should be a number, not {short_json(value)}")


def as_int(value: JSON, what: str = "value") -> int:
    """`value` as the integer it must be (a bool is not one); a `TypeError` naming
    `what` if not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{what} should be an integer, not {short_json(value)}")


def clean_text(text: str) -> str:
    """`text` with each lone surrogate and each NUL replaced by U+FFFD; a well-formed
    pair of surrogates (an emoji split in two code points) is joined into its character."""
    if text.isascii():
        return text if "\x00" not in text else text.replace("\x00", "\ufffd")
    if _UNSTORABLE.search(text) is None:
        return text
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_data(data: JSON) -> JSON:
    """JSON data (e.g. an exception's description) with lone surrogates in its
    strings replaced, and nothing else changed: it can then be journaled."""
    if isinstance(data, str):
        return clean_text(data)
    if isinstance(data, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [clean_data(v) for v in data]
    return data


def to_jsonable(value: Any, root: str = "value") -> JSON:
    """Convert a tool, step or output value into plain JSON data, exactly as the
    journal will hold it (see the module docstring). Raises `NotJSON`, naming the
    path from `root`, for what the journal cannot hold."""
    if value is None or type(value) is bool:
        return value
    if type(value) is str:
        return clean_text(value)
    try:
        data = orjson.dumps(value, default=_default)
    except TypeError:
        return _clean(value, root)  # surrogates, keys to convert, or a refusal with a path
    if b"null" in data or b"\\u0000" in data:  # maybe a NaN or an Infinity, or a NUL
        return _clean(value, root)
    converted: JSON = orjson.loads(data)
    return converted


def json_text(value: Any, root: str = "value") -> str:
    """The JSON text of `to_jsonable(value, root)`, encoded once when it can be."""
    try:
        data = orjson.dumps(value, default=_default)
    except TypeError:
        data = b"null"  # take the careful way below
    if b"null" in data or b"\\u0000" in data:
        return orjson.dumps(_clean(value, root)).decode()
    return data.decode()


# -- the careful way: a walk that knows where it is ---------------------------

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if _KEY.fullmatch(key) else f"{path}[{dumps_str(key)}]"


def _clean(value: Any, path: str) -> JSON:
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return clean_text(str.__str__(value))
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        if not _INT_MIN <= value <= _INT_MAX:
            raise NotJSON(
                path,
                f"is {value}, an integer beyond 64 bits, which the journal cannot hold "
                "exactly: return it as a string (or as a float, if precision may go).",
            )
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(
                path,
                f"is {value}, which JSON cannot hold (it would be read back as null): "
                "return None, a number or a string in its place.",
            )
        return float(value)
    if isinstance(value, dict):
        return _clean_dict(value, path)
    if isinstance(value, list | tuple):
        return [_clean(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return _clean_other(value, path)


def _clean_dict(value: dict[Any, Any], path: str) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for key, item in value.items():
        name = _key(key, path)
        if name in out:
            raise NotJSON(
                _at(path, name),
                f"is given twice: by the key {key!r} and by another key that JSON also "
                f"writes as {dumps_str(name)}. Use distinct string keys.",
            )
        out[name] = _clean(item, _at(path, name))
    return out


def _key(key: Any, path: str) -> str:
    """A dict key as JSON writes it (as `json.dumps` does for int, float, bool, None)."""
    if isinstance(key, str):
        return clean_text(str.__str__(key))
    if key is None or isinstance(key, bool):
        return dumps_str(key)
    if isinstance(key, int | float) and not isinstance(key, enum.Enum):
        if isinstance(key, float) and not math.isfinite(key):
            raise NotJSON(path, f"has the key {key}, which JSON cannot write: use a string key.")
        return repr(int(key) if isinstance(key, int) else float(key))
    raise NotJSON(
        path,
        f"has the key {key!r} ({type(key).__name__}): JSON object keys are strings "
        "(ints, floats and bools become their text); use a string key.",
    )


def _clean_other(value: Any, path: str) -> JSON:
    if isinstance(value, pydantic.BaseModel):
        return _clean(value.model_dump(mode="json"), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _clean(fields, path)
    if isinstance(value, enum.Enum):
        return _clean(value.value, path)
    if isinstance(value, set | frozenset):
        return [_clean(item, f"{path}[{i}]") for i, item in enumerate(_default(value))]
    try:  # what orjson writes natively: datetime, date, time, UUID (as strings)
        native: JSON = orjson.loads(orjson.dumps(value))
        return native
    except TypeError:
        pass
    raise NotJSON(
        path,
        f"has type {type(value).__name__}: use a str, number, bool, None, "
        "list, dict, dataclass or pydantic model.",
    )


def short_json(value: object, width: int = 60) -> str:
    """`value` as JSON text, cut to `width` characters for a message."""
    text = dumps_str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
