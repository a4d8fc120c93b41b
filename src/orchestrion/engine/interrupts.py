"""Human-in-the-loop: interrupts a run waits on, and the answers that release them.

An interrupt is a step whose result is a human's answer. While the answer is
missing the run suspends (status `interrupted`); `Runtime.resume(run_id,
answers)` supplies it, and the answer is validated where the run asks for it
before anything is journaled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from orchestrion._json import JSON, as_object, as_str
from orchestrion.errors import AnswerError

InterruptKind = Literal["approval", "input"]

APPROVAL_SCHEMA: dict[str, JSON] = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "reason": {"type": "string", "description": "Why it was rejected; the model is told."},
        "arguments": {"type": "object", "description": "Edited arguments to call the tool with."},
    },
    "required": ["approved"],
    "additionalProperties": False,
}


def interrupt_id(key: str) -> str:
    """A short id for the interrupt at step `key`, stable across resumes."""
    return "i-" + hashlib.blake2s(key.encode(), digest_size=5).hexdigest()


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A question the run waits on."""

    id: str
    key: str
    kind: InterruptKind
    payload: JSON
    """What to show the human: for approvals `{"tool", "arguments", "call_id"}`."""
    schema: JSON
    """JSON schema of the expected answer."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "payload": self.payload,
            "schema": self.schema,
        }

    @classmethod
    def from_json(cls, data: JSON) -> Interrupt:
        """An interrupt as `to_json` wrote it (a run record's `pending` holds these)."""
        fields = as_object(data, "a pending interrupt")
        kind = _KINDS.get(fields["kind"])
        if kind is None:
            raise TypeError(f"a pending interrupt has an unknown kind: {fields['kind']!r}")
        return cls(
            as_str(fields["id"], "an interrupt's id"),
            as_str(fields["key"], "an interrupt's key"),
            kind,
            fields["payload"],
            fields["schema"],
        )


_KINDS: dict[object, InterruptKind] = {"approval": "approval", "input": "input"}


@dataclass(frozen=True, slots=True)
class Approve:
    """Approve a pending tool call, optionally with edited arguments."""

    arguments: dict[str, JSON] | None = None

    def to_json(self) -> dict[str, JSON]:
        if self.arguments is None:
            return {"approved": True}
        return {"approved": True, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Reject:
    """Reject a pending tool call; the model is told `reason`."""

    reason: str = ""

    def to_json(self) -> dict[str, JSON]:
        return {"approved": False, "reason": self.reason}


Answer = Approve | Reject | JSON


def normalize_approval(interrupt_id: str, answer: Answer) -> dict[str, JSON]:
    """Check an answer to an approval interrupt and return its journaled form."""
    if isinstance(answer, Approve | Reject):
        return answer.to_json()
    if isinstance(answer, bool):
        return {"approved": answer}
    problem = _approval_problem(answer)
    if problem:
        raise AnswerError(
            f"Answer {answer!r} to approval {interrupt_id} is invalid: {problem}. Expected "
            '{"approved": true}, {"approved": true, "arguments": {...}} or '
            '{"approved": false, "reason": "..."} (or Approve()/Reject(reason) in Python).'
        )
    return dict(as_object(answer))


def decision_of(answer: dict[str, JSON]) -> Approve | Reject:
    """A journaled approval answer (`normalize_approval`'s form) as the decision it is."""
    if answer.get("approved") is True:
        edited = answer.get("arguments")
        return Approve(dict(as_object(edited)) if edited is not None else None)
    reason = answer.get("reason")
    return Reject(reason if isinstance(reason, str) else "")


def _approval_problem(answer: Any) -> str:
    if not isinstance(answer, dict):
        return f"it is a {type(answer).__name__}, not an object"
    if not isinstance(answer.get("approved"), bool):
        return "'approved' must be true or false"
    extra = set(answer) - {"approved", "reason", "arguments"}
    if extra:
        return f"unexpected fields {sorted(extra)}"
    if "reason" in answer and not isinstance(answer["reason"], str):
        return "'reason' must be a string"
    if "arguments" in answer and not isinstance(answer["arguments"], dict):
        return "'arguments' must be an object"
    return ""


def answer_to_json(answer: Answer) -> JSON:
    if isinstance(answer, Approve | Reject):
        return answer.to_json()
    return answer
