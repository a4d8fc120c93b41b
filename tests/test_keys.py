"""Step keys: built and parsed in `orchestrion.keys` only, in the format journals hold."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrion import keys
from orchestrion.messages import ToolCall

SRC = Path(__file__).resolve().parents[1] / "src" / "orchestrion"


# -- the format --------------------------------------------------------------


def test_builders_spell_keys_as_journals_hold_them() -> None:
    turn, model = keys.turn_keys("supervisor", 2)
    call = keys.tool_key(turn, "get_balance", "call_7f", 0)
    assert turn == "supervisor/turn-2"
    assert model == "supervisor/turn-2/model"
    assert call == "supervisor/turn-2/tool/get_balance#call_7f"
    assert keys.approval_key(call) == "supervisor/turn-2/tool/get_balance#call_7f/approval"
    assert keys.child("fanout", keys.numbered("branch", 3)) == "fanout/branch-3"
    assert keys.child("", "fanout") == "fanout"  # the run's root member
    assert keys.child("wf", keys.numbered("interrupt", 1)) == "wf/interrupt-1"
    assert keys.scope_marker("wf/step-0/parse") == "wf/step-0/parse/"
    assert keys.member_keys("wf/step-0", "parse") == ("wf/step-0/parse", "wf/step-0/parse/")
    assert keys.member_keys("", "wf") == ("wf", "wf/")
    assert keys.fallback_key("team/billing", "backup") == "team/billing/fallback/backup"
    assert keys.gave_up_key("team/billing") == "team/billing/gave-up"


def test_model_chosen_tool_names_and_ids_are_made_safe() -> None:
    calls = (ToolCall("c/1", "a/../b", "{}"), ToolCall("", "pay", "{}"), ToolCall("", "pay", "{}"))
    assert keys.tool_keys("ag/turn-1", calls) == [
        "ag/turn-1/tool/a_.._b#c_1",
        "ag/turn-1/tool/pay#1",
        "ag/turn-1/tool/pay#2",
    ]
    same = (ToolCall("x", "a", "{}"), ToolCall("x", "a", "{}"))
    assert keys.tool_keys("ag/turn-1", same) == ["ag/turn-1/tool/a#x", "ag/turn-1/tool/a#x~1"]


def test_parse_reads_an_agent_step_under_a_delegation() -> None:
    key = "team/turn-1/tool/delegate_to_pay#d/pay/turn-2/tool/pay_loan#call_1~2/approval"
    parsed = keys.parse(key)
    assert parsed.kind == "approval"
    assert (parsed.turn, parsed.tool, parsed.call_id) == (2, "pay_loan", "call_1")
    assert [p.tool for p in parsed.calls] == ["delegate_to_pay", "pay_loan"]
    assert [p.text for p in parsed.parts] == [
        "team",
        "turn-1/tool/delegate_to_pay#d",
        "pay",
        "turn-2/tool/pay_loan#call_1~2",
        "approval",
    ]


def test_a_group_chat_turn_holding_members_is_no_agent_turn() -> None:
    parsed = keys.parse("chat/turn-3/alice/turn-1/model")
    assert [p.turn for p in parsed.parts] == [None, None, None, 1]
    assert parsed.kind == "model"
    assert parsed.turn == 1


def test_relations() -> None:
    assert keys.parent("a/b/c") == "a/b"
    assert keys.parent("a") is None
    assert keys.ancestors("a/b/c") == ["a", "a/b"]
    assert keys.is_below("a/b", "a") and not keys.is_below("ab", "a")
    assert not keys.is_below("a", "a") and keys.is_within("a", "a")
    assert keys.is_scope_marker("a/b/") and keys.unmarked("a/b/") == "a/b"
    below = keys.below("a")
    inside = ["a/", "a/b", "a/\U0010ffff\U0010ffff"]
    outside = ["a", "a.", "a0", "ab", "a-b"]
    assert all(below.start <= k < below.stop for k in inside)
    assert not any(below.start <= k < below.stop for k in outside)
    assert keys.shared("a/b/c/model", "a/b/d") == keys.Shared("a/b/", "c/model")
    assert keys.shared("a/b", "a/b") == keys.Shared("a/", "b")  # never the last segment
    assert keys.shorten("a/b/c/d/e/f/g") == "a/b/c/.../f/g"


# -- build -> parse -> the same parts ------------------------------------------

_NAME = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True).filter(
    lambda n: not re.fullmatch(r"turn-\d+", n)  # a member named like an agent turn: see below
)
_HOSTILE = st.text(max_size=12)  # what a model may put in a tool name or a call id


@dataclass(frozen=True)
class _Built:
    """A key built the way the engine builds one, and what parsing it must give."""

    key: str
    texts: list[str]
    turn: int | None = None
    tool: str | None = None
    call_id: str | None = None
    delegations: int = 0


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@st.composite
def _built(draw: st.DrawFn) -> _Built:
    """A root member, then members nested in scopes or under tool calls, then a step;
    with the levels parsing must find, spelled out here independently of the builders."""
    root = draw(_NAME)
    key, texts, delegations = root, [root], 0
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):  # `ctx.run(member, key=...)`, e.g. `hop-2`, a GroupChat `turn-3`
            stem = draw(st.sampled_from(["hop", "branch", "step", "round", "turn", "select"]))
            segment = keys.numbered(stem, draw(st.integers(0, 99)))
            scope = keys.child(key, segment)
            texts.append(segment)
        else:  # a member run by a tool call (a delegation)
            turn, c = draw(st.integers(1, 50)), _call(draw)
            [scope] = keys.tool_keys(keys.turn_keys(key, turn)[0], [c])
            texts.append(f"turn-{turn}/tool/{_safe(c.name)}#{_safe(c.id) or 0}")
            delegations += 1
        member = draw(_NAME)
        key = keys.child(scope, member)
        texts.append(member)
    turn = draw(st.integers(1, 200))
    kind = draw(st.sampled_from(["model", "tool", "approval", "step"]))
    if kind == "model":
        step = keys.turn_keys(key, turn)[1]
        return _Built(step, [*texts, f"turn-{turn}/model"], turn, delegations=delegations)
    if kind == "step":  # a custom step, an interrupt, a clock read
        name = draw(_NAME)
        return _Built(keys.child(key, name), [*texts, name], delegations=delegations)
    c = _call(draw)
    times = draw(st.integers(1, 3))  # the same call again in one response: `~N`
    step = keys.tool_keys(keys.turn_keys(key, turn)[0], [c] * times)[-1]
    # A call without an id is keyed by its position, so repeating it makes no `~N`.
    call_id = _safe(c.id) or str(times - 1)
    repeat = f"~{times - 1}" if times > 1 and _safe(c.id) else ""
    texts.append(f"turn-{turn}/tool/{_safe(c.name)}#{call_id}{repeat}")
    if kind == "approval":
        step = keys.approval_key(step)
        texts.append("approval")
    return _Built(step, texts, turn, _safe(c.name), call_id, delegations)


def _call(draw: st.DrawFn) -> ToolCall:
    return ToolCall(draw(_HOSTILE), draw(_HOSTILE), "{}")


@given(_built())
def test_a_built_key_parses_into_the_parts_it_was_built_from(built: _Built) -> None:
    parsed = keys.parse(built.key)
    assert [p.text for p in parsed.parts] == built.texts
    assert (parsed.turn, parsed.tool, parsed.call_id) == (built.turn, built.tool, built.call_id)
    assert len(parsed.calls) == built.delegations + (built.tool is not None)
    assert keys.join(parsed.parts) == built.key
    assert keys.tool_of(built.key) == (built.tool if parsed.kind == "tool" else None)


@given(_built())
def test_model_text_never_adds_a_level(built: _Built) -> None:
    assert keys.parse(built.key).depth == len(built.texts)


@given(st.text(alphabet=st.sampled_from("ab/#~-turn0123model"), max_size=40))
def test_tools_above_names_the_calls_parse_finds(key: str) -> None:
    assert keys.tools_above(key) == [c.tool for c in keys.parse(key).calls]


@given(_built())
def test_tools_above_a_built_key_are_its_delegations_and_its_call(built: _Built) -> None:
    assert keys.tools_above(built.key) == [c.tool for c in keys.parse(built.key).calls]


@given(st.text(alphabet=st.sampled_from("ab/#~-turn0123model"), max_size=40))
def test_calls_at_most_is_never_fewer_than_the_calls_named(key: str) -> None:
    for prefix in ("", "a", "ab", "b"):
        named = [t for t in keys.tools_above(key) if t.startswith(prefix)]
        assert keys.calls_at_most(key, prefix) >= len(named)


@given(_built(), st.sampled_from(["", "delegate_to_", "a"]))
def test_calls_at_most_a_built_key_lies_under_bounds_them(built: _Built, prefix: str) -> None:
    named = [t for t in keys.tools_above(built.key) if t.startswith(prefix)]
    assert keys.calls_at_most(built.key, prefix) >= len(named)


@given(st.text(alphabet=st.sampled_from("ab/#~-turn0123model"), max_size=40))
def test_parse_loses_nothing_of_any_key(key: str) -> None:
    parsed = keys.parse(key)
    assert keys.join(parsed.parts, marker=parsed.marker) == key
    assert parsed.kind in ("model", "tool", "approval", "scope", "step")


# -- nobody else parses or assembles keys --------------------------------------

_KEY_OPS = re.compile(
    r"""\.(?:r?split|r?partition|r?find|r?index|count|startswith|endswith|removeprefix|removesuffix)"""
    r"""\(\s*f?["'][^"']*/"""  # a string operation on `/` (or on a path like `/tool/`)
    r"""|["']/["']\s*\.join"""  # joining segments
    r"""|\+\s*["']/|["']/["']\s*\+"""  # `key + "/"`
    r"""|[!=]=\s*["']/["']"""  # looking for the `/`s one character at a time
    r"""|\bf["'][^"'\n]*\}/|\bf["'][^"'\n]*/\{"""  # `f"{scope}/{name}"`
    r"""|\bf["'](?:turn|branch|hop|round|step|select|clock|summary|now|interrupt|"""
    r"""loop-guard|write-guard)-\{"""  # a numbered segment: `keys.numbered`
)
"""How code splits or joins step keys by hand."""

_NOT_KEYS = {
    "engine/store.py": ['url.partition("://")'],  # a store URL
    "stores/sqlite.py": ["sqlite:///"],
    "cli/workers.py": ['store.startswith("memory://")'],  # a store URL
    "stores/_sqlite_ops.py": ["sqlite:///"],
    "testing/models.py": ['["$ref"].rsplit("/", 1)'],  # a JSON Schema reference
}
"""Lines that handle other strings with slashes, and what marks each."""


def _offenders(path: Path, text: str) -> list[str]:
    where = path.relative_to(SRC).as_posix()
    allowed = _NOT_KEYS.get(where, [])
    return [
        f"{where}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if _KEY_OPS.search(line) and not any(mark in line for mark in allowed)
    ]


def test_no_module_but_keys_splits_or_joins_step_keys() -> None:
    found = [
        offender
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "keys.py"
        for offender in _offenders(path, path.read_text())
    ]
    assert found == [], "build and read step keys with orchestrion.keys:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'parts = key.split("/")',
        'head, _, last = key.rpartition("/")',
        'if not key.endswith("/"):',
        'depth = ctx.key.count(f"/tool/{DELEGATE}") - 1',
        'wrote = [k for k in ex.writes if k.startswith(key + "/")]',
        'prefix = f"{scope}/turn-{turn}"',
        'return "/".join(parts[:3])',
        'outcome = await ctx.run(active, given, key=f"hop-{hop}")',
        "cut = child.rfind('/')",
        'if not any(key[:i] in outer for i, c in enumerate(key) if c == "/")',
    ],
)
def test_the_architecture_check_sees_hand_made_keys(line: str) -> None:
    assert _offenders(SRC / "engine" / "x.py", line)
