"""The journal's typed records and their one codec: every record survives the
stored form, old journals decode to records that encode back to what was
stored, and an entry that holds no record is refused with where it is."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from orchestrion import DeterminismError, StoreError
from orchestrion.engine.journal import Entry, StepStatus
from orchestrion.engine.records import (
    Answered,
    AttemptFailed,
    ClockRead,
    GaveUp,
    InterruptAsked,
    ModelResponded,
    RandomSeed,
    Record,
    StepRaised,
    StepReturned,
    ToolReturned,
    UuidMade,
    WriteStarted,
    decode,
    encode,
    expect,
    value_record,
)
from orchestrion.messages import ModelResponse, ToolCall, Usage

CORPUS = Path(__file__).parent.parent / "compat"
ERROR = {"type": "ModelError", "message": "HTTP 503", "cause_chain": [], "transient": True}

EXAMPLES: list[tuple[str, Record]] = [
    ("model", ModelResponded(response=ModelResponse(text="hi", usage=Usage(3, 1, 1)))),
    (
        "model",
        ModelResponded(
            response=ModelResponse(tool_calls=(ToolCall("c1", "pay", "{}"),)), fallback="b"
        ),
    ),
    ("tool", ToolReturned(content="42")),
    ("tool", ToolReturned(content="no such tool", is_error=True)),
    ("tool", WriteStarted()),
    ("tool", WriteStarted(origin_key="0494b478")),
    ("model", AttemptFailed(error=ERROR, attempt=1, model="m", retry_in=0.5)),
    ("model", AttemptFailed(error=ERROR, attempt=2, model="m", opened_circuit=True, fallback="b")),
    ("model", AttemptFailed(error=ERROR, attempt=3, model="m")),
    ("tool", AttemptFailed(error=ERROR, attempt=1, retry_in=2.0)),
    ("step", StepRaised(error={"type": "ValueError", "message": "no", "cause_chain": []})),
    ("approval", InterruptAsked(payload={"tool": "pay", "arguments": {"amount": 1}})),
    ("interrupt", InterruptAsked(payload="Ship it?")),
    ("approval", Answered(answer={"approved": False, "reason": "too much"})),
    ("interrupt", Answered(answer=None)),
    ("step", StepReturned(value={"rows": [1, 2]})),
    ("clock", ClockRead(value=1767225600.25)),
    ("random", RandomSeed(value=2**53 - 1)),
    ("uuid", UuidMade(value="80cc993e-ea1e-4487-ad1b-edd839d90c68")),
    ("fallback", GaveUp(error=ERROR, agent="primary", fallback="backup")),
]


@pytest.mark.parametrize(("kind", "record"), EXAMPLES)
def test_every_record_decodes_from_its_stored_form_as_it_was(kind: str, record: Record) -> None:
    stored = Entry(7, "a/key", kind, record.status, encode(record))
    loaded = Entry.from_json(json.loads(json.dumps(stored.to_json())))
    assert decode(loaded) == record


def test_the_examples_cover_every_record_type() -> None:
    covered = {type(record) for _, record in EXAMPLES}
    assert covered == set(typing.get_args(Record))


def corpus_entries() -> list[Entry]:
    journals = [CORPUS / "v1/journal.json", *sorted(CORPUS.glob("v3/*/journal.json"))]
    return [Entry.from_json(e) for path in journals for e in json.loads(path.read_text())]


def test_old_journals_decode_and_encode_back_to_what_was_stored() -> None:
    entries = corpus_entries()
    kinds = set()
    for entry in entries:
        record = decode(entry)
        kinds.add(type(record))
        assert record.status is entry.status
        assert encode(record) == entry.result, entry.key
    assert kinds == set(typing.get_args(Record))  # the corpora hold every record type


def test_the_stored_form_of_a_failed_attempt_keeps_its_field_order() -> None:
    record = AttemptFailed(error=ERROR, attempt=2, model="m", opened_circuit=True, fallback="b")
    assert list(typing.cast(dict[str, object], encode(record))) == [
        *ERROR,
        "model",
        "attempt",
        "opened_circuit",
        "fallback",
    ]


@pytest.mark.parametrize(
    ("kind", "status", "result", "problem"),
    [
        (
            "tool",
            StepStatus.COMPLETED,
            {"content": 42, "is_error": False},
            "its content should be a string, not 42",
        ),
        ("tool", StepStatus.COMPLETED, "plain text", "should be a JSON object"),
        ("model", StepStatus.COMPLETED, {"tool_calls": [["only-an-id"]]}, "missing"),
        ("random", StepStatus.COMPLETED, 0.5, "a random seed should be an integer"),
        ("clock", StepStatus.COMPLETED, "noon", "a clock read should be a number"),
        ("model", StepStatus.FAILED, {"type": "X", "attempt": "2"}, "its attempt should be an"),
        ("fallback", StepStatus.COMPLETED, {"type": "X", "agent": "a"}, "no field 'fallback'"),
        ("model", StepStatus.PENDING, None, "no record is a model step that is pending"),
        ("teleport", StepStatus.COMPLETED, None, "no record is a teleport step"),
    ],
)
def test_an_entry_that_holds_no_record_is_refused_with_where_it_is(
    kind: str, status: StepStatus, result: object, problem: str
) -> None:
    with pytest.raises(StoreError, match="Journal entry 3 \\(a/b\\)") as info:
        decode(Entry(3, "a/b", kind, status, result))
    assert problem in str(info.value)


def test_a_step_replayed_as_another_kind_of_record_is_a_determinism_error() -> None:
    entry = Entry(0, "flow/fetch", "step", StepStatus.COMPLETED, {"rows": 3})
    assert expect(entry, StepReturned).value == {"rows": 3}
    with pytest.raises(DeterminismError, match="holds a StepReturned where the run expects"):
        expect(entry, ModelResponded)


def test_a_value_step_is_checked_before_it_is_journaled() -> None:
    assert value_record("clock", 1.5) == ClockRead(value=1.5)
    with pytest.raises(TypeError, match="a random seed should be an integer"):
        value_record("random", True)
