"""`orchestrion show`: a run as a tree of its members, `--flat` and `--json`."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from orchestrion import (
    Agent,
    Approve,
    GroupChat,
    LoopGuard,
    MaxTurns,
    RunStatus,
    Runtime,
    Supervisor,
    tool,
)
from orchestrion.cli import app
from orchestrion.cli.render import LiveView
from orchestrion.cli.views import run_json, step_json, totals_json
from orchestrion.demos import loan_team
from orchestrion.engine.costs import by_agent_and_model
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, ScriptedModel, call

TARGETS = Path(__file__).parent / "targets.py"
LOAN_TEAM = "orchestrion.demos.loan_team:agent"
GUIDES = re.compile(r"^((?:│   |    )*(?:├── |└── ))?(.*)$")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'show.db'}"


@pytest.fixture(autouse=True)
def fresh_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demos' bank lives in the process: give each test its own."""
    from orchestrion.demos import loan_payoff

    monkeypatch.setattr(loan_payoff, "BANK", loan_payoff.Bank())


def invoke(*args: str, columns: int = 100) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout


def show(store_url: str, run_id: str, *extra: str, columns: int = 100) -> str:
    code, out = invoke("show", run_id, "--store", store_url, *extra, columns=columns)
    assert code == 0, out
    return out


def tree(out: str) -> list[tuple[int, str]]:
    """Each line as (depth, label): depth 0 is the root (and the lines around the tree)."""
    lines = []
    for line in out.splitlines():
        match = GUIDES.match(line)
        assert match is not None
        guides, label = match.groups()
        lines.append((len(guides or "") // 4, label.strip()))
    return lines


def find(lines: list[tuple[int, str]], start: str, after: int = -1) -> tuple[int, int]:
    """(line index, depth) of the first label after line `after` that starts with `start`
    (and not with a longer name: `loans` does not find `loans-2`)."""
    word = re.compile(re.escape(start) + r"(?![\w-])")
    for i, (depth, label) in enumerate(lines):
        if i > after and word.match(label):
            return i, depth
    shown = "\n".join(text for _, text in lines)
    raise AssertionError(f"no line starts with {start!r} in\n{shown}")


def nested(lines: list[tuple[int, str]], *path: str) -> list[int]:
    """The depths of `path`'s labels, each found below the one before it and inside its
    subtree (no line in between is shallower)."""
    depths: list[int] = []
    at = -1
    for label in path:
        i, depth = find(lines, label, at)
        if depths:
            assert depth > depths[-1], (label, depth, depths)
            assert all(d > depths[-1] for d, _ in lines[at + 1 : i]), f"{label} left its parent"
        at = i
        depths.append(depth)
    return depths


def test_loan_team_nests_workers_under_their_delegations_before_and_after_approval(
    store_url: str,
) -> None:
    code, out = invoke(
        "run", LOAN_TEAM, "-i", loan_team.TASK, "--run-id", "lt", "--store", store_url
    )
    assert code == 3, out

    lines = tree(show(store_url, "lt"))
    assert lines[0] == (0, "run lt  loan-team  interrupted")
    assert lines[1] == (0, "loan-team")
    assert find(lines, "manager")[1] == 1
    for worker in ("loans", "balances", "payments"):
        depths = nested(lines, "manager", f"tool delegate_to_{worker}", worker, "turn 1 model")
        assert depths == [1, 2, 3, 4]
    workers = [find(lines, worker)[0] for worker in ("loans", "balances", "payments")]
    assert workers == sorted(workers)  # in the order the manager delegated
    # the payment waits for its approval, under the tool call that asked for it
    assert nested(lines, "payments", "tool pay_loan#call_pay", "approval") == [3, 4, 5]
    i, _ = find(lines, "approval")
    assert "approval  pending" in lines[i][1]
    j, depth = find(lines, "waiting", i)  # below the tree (and what its model calls spent)
    assert depth == 0 and all(d == 0 for d, _ in lines[i + 1 : j])
    assert any(label.startswith("model calls by agent") for _, label in lines[i + 1 : j])

    pending = json.loads(invoke("show", "lt", "--store", store_url, "--json")[1])["pending"]
    code, out = invoke("resume", "lt", "--approve", pending[0]["id"], "--store", store_url)
    assert code == 0, out

    out = show(store_url, "lt")
    lines = tree(out)
    assert lines[0] == (0, "run lt  loan-team  completed")
    i, depth = find(lines, "approval")
    assert depth == 5 and "approval  completed" in lines[i][1]
    assert nested(lines, "payments", "turn 1 model") == [3, 4]
    _, tool_line = lines[find(lines, "tool pay_loan#call_pay")[0]]
    assert "completed" in tool_line and "accepted" in tool_line
    # a later turn of the manager goes back to depth 2, after the payments subtree
    i, depth = find(lines, "turn 3 model")
    assert depth == 2 and i > find(lines, "payments")[0]
    assert "waiting" not in out and "output: [stand-in model] Done: paid 4,812.50" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def results(request: ModelRequest) -> list[ToolResult]:
    return [m for m in request.messages if isinstance(m, ToolResult)]


def supervisor_of(name: str, below: Any) -> Supervisor:
    def plan(request: ModelRequest) -> object:
        done = results(request)
        if not done:
            return call(f"delegate_to_{below.name}", {"task": f"{name} plan"}, id=f"{name}-1")
        return f"{name}<{done[-1].content}>"

    manager = Agent(name=f"{name}-lead", model=FunctionModel(plan))
    return Supervisor(name=name, manager=manager, workers=[below])


def run_in(store_url: str, work: Any) -> Any:
    async def go() -> Any:
        async with Runtime(store_url) as runtime:
            return await work(runtime)

    return asyncio.run(go())


def test_a_three_level_hierarchy_shows_three_nested_levels(store_url: str) -> None:
    @tool(approval=True)
    def deploy(what: str) -> str:
        return f"deployed {what}"

    execution = Agent(
        name="execution",
        model=ScriptedModel([call("deploy", {"what": "v2"}, id="dep"), "shipped"]),
        tools=[deploy],
    )
    strategy = supervisor_of("strategy", supervisor_of("tactics", execution))

    async def work(runtime: Runtime) -> Any:
        first = await runtime.run(strategy, "grow", run_id="h3")
        return await runtime.resume("h3", {first.interrupts[0].id: Approve()})

    assert run_in(store_url, work).output == "strategy<tactics<shipped>>"

    out = show(store_url, "h3")
    lines = tree(out)
    assert nested(
        lines,
        "strategy",
        "strategy-lead",
        "tool delegate_to_tactics#strategy-1",
        "tactics",
        "tactics-lead",
        "tool delegate_to_execution#tactics-1",
        "execution",
        "tool deploy#dep",
        "approval",
    ) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    # each level's final answer is its second turn, back at the depth of its first one
    answers = [(d, label) for d, label in lines if label.startswith("turn 2 model")]
    assert [(d, label.split()[-1]) for d, label in answers] == [
        (7, "'shipped'"),
        (5, "'tactics<shipped>'"),
        (2, "'strategy<tactics<shipped>>'"),
    ]
    assert lines[-1] == (0, "output: strategy<tactics<shipped>>")
    assert max(len(line) for line in out.splitlines()) <= 100


def test_a_failed_run_shows_its_error_under_the_tree(store_url: str) -> None:
    code, _ = invoke("run", f"{TARGETS}:broken", "--run-id", "b1", "--store", store_url, "--json")
    assert code == 1

    lines = tree(show(store_url, "b1"))
    assert lines[:2] == [(0, "run b1  broken  failed"), (0, "broken")]
    i, depth = find(lines, "turn 2 model")
    j, call_depth = find(lines, "tool nope", i)
    assert (depth, call_depth) == (1, 1)
    assert lines[j][1].split()[2:4] == ["completed", "0.0"]  # the tool step itself did not fail
    assert "error: Unknown tool 'nope'" in lines[j][1]
    [k] = [k for k, (_, label) in enumerate(lines) if label.startswith("error: ")]
    assert k > j and lines[k][1].startswith("error: MaxTurnsExceeded: Agent 'broken' reached")


def test_a_fork_says_where_it_comes_from(store_url: str) -> None:
    invoke("run", f"{TARGETS}:echo", "-i", "one", "--run-id", "e1", "--store", store_url)
    at = "echo/turn-1/model"
    code, _ = invoke(
        "fork", "e1", "--at", at, "--edit", "two", "--run-id", "e2", "--store", store_url
    )
    assert code == 0

    lines = tree(show(store_url, "e2"))
    assert lines[0] == (0, f"run e2  echo  completed  forked from e1 at {at}")
    (_, root), (depth, step), last = lines[1:]
    assert (root, depth, last) == ("echo", 1, (0, "output: two"))
    assert step.startswith("turn 1 model  completed") and step.endswith("'two'")


def test_a_stopped_run_shows_its_error(store_url: str) -> None:
    @tool
    def get_balance(account: str) -> str:
        return "1,000"

    stubborn = Agent(
        name="stubborn",
        model=ScriptedModel([call("get_balance", {"account": "savings"})] * 3 + ["never"]),
        tools=[get_balance],
        loop_guard=LoopGuard(repeats=2, policy="stop"),
    )
    result = run_in(store_url, lambda runtime: runtime.run(stubborn, "balance?", run_id="s1"))
    assert result.status is RunStatus.STOPPED

    out = show(store_url, "s1", columns=200)
    assert out.splitlines()[0] == "run s1  stubborn  stopped"
    [error] = [line for line in out.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: LoopDetected: ") and "get_balance" in error


def test_scopes_share_a_line_with_their_member_and_failed_branches_say_why(store_url: str) -> None:
    code, out = invoke("demo", "incident-response", "--store", store_url)
    assert code == 0, out
    [run] = json.loads(invoke("runs", "--store", store_url, "--json")[1])

    lines = tree(show(store_url, run["id"], columns=160))
    assert lines[1] == (0, "incident-response")
    for i, member in enumerate(("logs", "metrics", "deploys")):
        assert nested(lines, f"branch-{i}/{member}", "turn 1 model") == [1, 2]
    i, _ = find(lines, "branch-2/deploys")
    assert "failed" in lines[i][1] and "ToolError: Tool 'get_deploy_history' raised" in lines[i][1]
    assert nested(lines, "aggregate/summarizer", "turn 1 model") == [1, 2]


def test_a_group_chats_turn_scopes_are_not_mistaken_for_agent_turns(store_url: str) -> None:
    chat = GroupChat(
        name="review",
        participants=[
            Agent(name="writer", model=ScriptedModel(["draft 1", "draft 2"])),
            Agent(name="critic", model=ScriptedModel(["too long"])),
        ],
        termination=MaxTurns(3),
    )
    run_in(store_url, lambda runtime: runtime.run(chat, "a tagline", run_id="gc"))

    lines = tree(show(store_url, "gc"))
    speakers = [label.split()[0] for depth, label in lines if depth == 1 and "/" in label]
    assert speakers == ["turn-1/writer", "turn-2/critic", "turn-3/writer"]
    said = [label for depth, label in lines if depth == 2]
    assert all(label.startswith("turn 1 model  completed") for label in said)
    assert said[2].endswith("'draft 2'")


def test_flat_prints_the_journal_as_a_table_in_order(store_url: str) -> None:
    invoke("run", LOAN_TEAM, "-i", loan_team.TASK, "--run-id", "lt", "--store", store_url)
    out = show(store_url, "lt", "--flat", columns=300)
    header = out.splitlines()[1]
    assert [c.strip() for c in header.split("┃")] == ["#", "step", "kind", "status", "ms", "result"]
    journal = out.split("model calls by agent")[0]  # the table of spending follows it
    rows = [line.split("│") for line in journal.splitlines()[3:] if "│" in line]
    keys = [row[1].strip() for row in rows]
    assert keys[0] == "loan-team/manager/turn-1/model"
    assert (
        "loan-team/manager/turn-2/tool/delegate_to_payments#d_pay/payments/turn-1/tool/"
        "pay_loan#call_pay/approval"
    ) in keys
    seqs = [int(row[0]) for row in rows]
    assert seqs == sorted(seqs)


def test_json_is_the_record_with_its_steps(store_url: str) -> None:
    invoke("run", LOAN_TEAM, "-i", loan_team.TASK, "--run-id", "lt", "--store", store_url)
    shown = json.loads(show(store_url, "lt", "--json"))

    async def fetch(runtime: Runtime) -> tuple[Any, Any]:
        return await runtime.get("lt"), await runtime.history("lt")

    record, steps = run_in(store_url, fetch)
    expected = run_json(record)
    expected["orphaned_since"] = None  # interrupted: nobody needs to work on it
    expected["steps"] = [step_json(s) for s in steps]
    expected["by_agent"] = [
        totals_json(agent, model, t) for (agent, model), t in by_agent_and_model(steps).items()
    ]
    assert shown == json.loads(json.dumps(expected))
    assert set(shown["steps"][0]) == {
        "seq",
        "key",
        "kind",
        "status",
        "started_at",
        "ended_at",
        "result",
        "attempts",
        "duration_ms",
        "agent",
        "model",
        "usage",
    }
    assert shown["status"] == "interrupted" and len(shown["steps"]) == len(steps) > 10


async def test_the_live_view_shows_the_same_nesting() -> None:
    view = LiveView()
    async with Runtime("memory://", sinks=[view]) as runtime:
        first = await runtime.run(loan_team.agent, loan_team.TASK)
        pending = tree(_render(view))
        await runtime.resume(first.run_id, {first.interrupts[0].id: Approve()})
    done = tree(_render(view))

    assert pending[0][1] == f"run {first.run_id} loan-team"
    assert nested(pending, "loan-team", "manager", "tool delegate_to_payments", "payments") == [
        0,
        1,
        2,
        3,
    ]
    assert "approval  pending" in pending[find(pending, "approval")[0]][1]
    assert done[0][1].endswith("(resumed)")
    assert nested(done, "payments", "tool pay_loan#call_pay", "approval") == [3, 4, 5]
    assert "approval  completed" in done[find(done, "approval")[0]][1]


def _render(view: LiveView) -> str:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(view)
    return out.getvalue()
