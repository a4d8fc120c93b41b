"""The one conversion of a run's values into what the journal holds (`orchestrion._json`)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import orjson
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import orchestrion
from orchestrion._json import (
    NotJSON,
    clean_data,
    clean_text,
    dumps_str,
    json_text,
    loads,
    to_jsonable,
)

FFFD = "\ufffd"


def test_lone_surrogates_become_the_replacement_character() -> None:
    assert clean_text("half \ud83d an emoji") == f"half {FFFD} an emoji"
    assert clean_text("\udcff") == FFFD
    assert clean_text("plain ascii") == "plain ascii"
    assert clean_text("déjà vu 😀") == "déjà vu 😀"


def test_a_pair_of_surrogates_is_joined_into_its_character() -> None:
    assert clean_text("\ud83d\ude00") == "😀"
    assert to_jsonable({"face": "\ud83d\ude00"}) == {"face": "😀"}


def test_surrogates_are_replaced_in_values_and_keys() -> None:
    value = {"a\ud800": ["x\udfff", {"k": "\ud83d"}]}
    assert to_jsonable(value) == {f"a{FFFD}": [f"x{FFFD}", {"k": FFFD}]}
    assert json_text(value) == orjson.dumps(to_jsonable(value)).decode()


def test_nul_becomes_the_replacement_character_in_text_values_and_keys() -> None:
    assert clean_text("a\x00b") == f"a{FFFD}b"
    assert clean_text("é\x00\ud83d") == f"é{FFFD}{FFFD}"
    value = {"k\x00": ["x\x00", {"n": 1.5}]}
    assert to_jsonable(value) == {f"k{FFFD}": [f"x{FFFD}", {"n": 1.5}]}
    assert json_text(value) == orjson.dumps(to_jsonable(value)).decode()


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (math.nan, "result"),
        (
            {"items": [{"price": 1.0}, {"price": 2.0}, {"price": 3.0}, {"price": math.nan}]},
            "result.items[3].price",
        ),
        ({"odd key": [math.inf]}, 'result["odd key"][0]'),
        ([{"x": -math.inf}], "result[0].x"),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_path(value: object, path: str) -> None:
    for convert in (to_jsonable, json_text):
        with pytest.raises(NotJSON) as info:
            convert(value, "result")
        assert info.value.path == path
        assert str(info.value).startswith(f"{path} is ")
        assert "JSON cannot hold" in str(info.value)


def test_integers_beyond_64_bits_are_refused_naming_the_path() -> None:
    assert to_jsonable({"n": 2**64 - 1}) == {"n": 2**64 - 1}
    assert to_jsonable({"n": -(2**63)}) == {"n": -(2**63)}
    for big in (2**64, -(2**63) - 1, 10**30):
        with pytest.raises(NotJSON, match=r"result\.ids\[1\] is -?\d+, an integer beyond 64 bits"):
            to_jsonable({"ids": [1, big]}, "result")


def test_int_float_bool_and_none_keys_become_their_json_text() -> None:
    value = {1: "one", 2.5: "two and a half", None: "null", False: "no"}
    expected = {"1": "one", "2.5": "two and a half", "null": "null", "false": "no"}
    assert to_jsonable(value) == expected
    assert loads(json_text(value)) == expected


def test_keys_that_would_collide_or_are_not_scalars_are_refused() -> None:
    with pytest.raises(NotJSON, match=r'result\["1"\] is given twice'):
        to_jsonable({1: "a", "1": "b"}, "result")
    with pytest.raises(NotJSON, match=r"result\.m has the key \(1, 2\) \(tuple\)"):
        to_jsonable({"m": {(1, 2): "pair"}}, "result")


def test_other_values_name_their_type_and_path() -> None:
    class Receipt:
        pass

    with pytest.raises(NotJSON, match=r"input\.when has type Receipt"):
        to_jsonable({"when": Receipt()}, "input")


def test_dataclasses_and_models_are_checked_inside() -> None:
    @dataclasses.dataclass
    class Quote:
        price: float

    class Basket(pydantic.BaseModel):
        note: str

    assert to_jsonable({"q": Quote(1.5), "b": Basket(note="\ud83d")}) == {
        "q": {"price": 1.5},
        "b": {"note": FFFD},
    }
    with pytest.raises(NotJSON, match=r"result\.q\.price is inf"):
        to_jsonable({"q": Quote(math.inf)}, "result")


def test_clean_data_only_replaces_surrogates() -> None:
    error = {"type": "ValueError", "message": "bad \ud83d", "status_code": None, "n": 2}
    assert clean_data(error) == {
        "type": "ValueError",
        "message": f"bad {FFFD}",
        "status_code": None,
        "n": 2,
    }


_surrogate = st.integers(0xD800, 0xDFFF).map(chr)  # st.characters() almost never gives one
_text = st.lists(st.one_of(st.characters(), _surrogate), max_size=8).map("".join)
_key = st.one_of(_text, st.integers(-(2**63), 2**63), st.booleans(), st.none())
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_values = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_what_the_process_uses_is_what_the_journal_reads_back(value: object) -> None:
    try:
        converted = to_jsonable(value)
    except NotJSON as exc:  # only keys that collide once written (1 and "1")
        assert "is given twice" in str(exc)
        return
    text = json_text(value)
    assert loads(text) == converted
    assert loads(orjson.dumps(converted)) == converted
    assert to_jsonable(converted) == converted


# -- data, not code: a journal is never pickled -----------------------------------

CODE_SERIALISERS = frozenset(
    {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "copyreg"}
)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of each import in `tree`, `importlib.import_module("x")` and
    `__import__("x")` with a literal name included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_module_of_orchestrion_imports_a_code_serialiser() -> None:
    """Journals and records are written as JSON (`_json`, the stores' encoders, any
    codec): no module of the package can pickle a value, even by mistake."""
    package = Path(orchestrion.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert {package / "_json.py", package / "stores" / "sqlite.py"} <= set(files)
    offending = [
        f"{path.relative_to(package)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in CODE_SERIALISERS
    ]
    assert offending == []


def test_the_import_scan_sees_every_way_of_importing() -> None:
    tree = ast.parse(
        "import pickle\nfrom marshal import dumps\nimport importlib\n"
        "importlib.import_module('shelve')\n__import__('dill')\nfrom . import sibling\n"
    )
    assert {m for _, m in imported_modules(tree)} == {
        "pickle",
        "marshal",
        "importlib",
        "shelve",
        "dill",
    }


def test_a_value_that_is_not_json_is_refused_by_the_encoders_not_pickled() -> None:
    class Receipt:
        pass

    # What the stores write records and journal entries with.
    with pytest.raises(TypeError, match="not JSON serializable: Receipt"):
        dumps_str({"result": {"when": Receipt()}})
    # What a run's values (a tool's result, a step's value, an output) become first.
    with pytest.raises(NotJSON, match=r"result\.when has type Receipt"):
        json_text({"when": Receipt()}, "result")
    with pytest.raises(NotJSON, match=r"result\.when has type Receipt"):
        to_jsonable({"when": Receipt()}, "result")
