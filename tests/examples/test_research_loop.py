"""The research loop (hierarchical Supervisors): three levels of delegation, a loop
guard on a stubborn search, one objection then approval, the lead's max_rounds
bound, and a resume after a crash that re-runs nothing already done."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from orchestrion import Event, LoopGuardTriggered, RunFinished, RunStatus, Runtime, StepStarted
from orchestrion.demos.research_loop import TASK, Finding, Lab, Metric, build, stand_in_policy
from orchestrion.demos.stand_in import offered, results, say
from orchestrion.engine.store import Store, open_store
from orchestrion.messages import ModelRequest, ModelResponse, ToolResult
from orchestrion.testing import FunctionModel

LEAD = "research/lead"
INV_1 = f"{LEAD}/turn-1/tool/delegate_to_investigation#inv-1"
SEARCH_1 = f"{INV_1}/investigation/coordinator/turn-1/tool/delegate_to_search#find"
CODE_1 = f"{INV_1}/investigation/coordinator/turn-2/tool/delegate_to_code#measure"
FIRST_QUERY = "caching tokenizer cut p95 latency"
OBJECTION = (
    "In EXP-311 the arms ran at different load (1,900 vs 1,150 req/s, on different days), "
    "so lower load alone could explain the lower p95. Compare the arms on the same traffic."
)
FINDING = Finding(
    answer=(
        "[stand-in model] Yes: caching the tokenizer cuts p95 latency by 18%, 179.6 ms -> "
        "146.8 ms (replay-control vs replay-cached). A first estimate of 26% was withdrawn "
        "after the skeptic's review."
    ),
    evidence=[
        "LOADTEST-12, Replay of recorded traffic against both EXP-311 arms: Tuesday's recorded "
        "gateway traffic (1,500 req/s) replayed against each EXP-311 arm on the same hosts, "
        "one arm after the other. Request latency in ms: datasets replay-control and "
        "replay-cached.",
        "p95 latency: replay-control 179.6 ms (n=2000), replay-cached 146.8 ms (n=2000).",
    ],
    objections_resolved=[OBJECTION],
)


@pytest.fixture
async def runtime(store: Store) -> AsyncIterator[Runtime]:
    """On every store (the examples' own fixture is memory only)."""
    async with Runtime(store) as rt:
        yield rt


class CountingLab(Lab):
    """The lab, noting every search and computation that reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []
        self.computed: list[str] = []

    def find(self, query: str) -> list[dict[str, str]]:
        self.queries.append(query)
        return super().find(query)

    def measure(self, metric: Metric, dataset: str) -> dict[str, object]:
        self.computed.append(f"{metric} {dataset}")
        return super().measure(metric, dataset)


def delegations(keys: list[str], worker: str) -> list[str]:
    """The lead's delegations to `worker`, in order."""
    pattern = rf"{LEAD}/turn-\d+/tool/delegate_to_{worker}#[^/]+"
    return [k for k in keys if re.fullmatch(pattern, k)]


async def test_the_team_answers_with_a_typed_finding(runtime: Runtime) -> None:
    lab = CountingLab()
    result = await runtime.run(build(), TASK, deps=lab)
    assert result.status is RunStatus.COMPLETED and not result.interrupts
    assert result.output == FINDING
    assert lab.queries == [FIRST_QUERY] * 3 + ["tokenizer", "exp-311 same traffic"]
    assert lab.computed == [
        "p95 exp311-control",
        "p95 exp311-cached",
        "p95 replay-control",
        "p95 replay-cached",
    ]


async def test_the_journal_nests_three_levels(runtime: Runtime) -> None:
    result = await runtime.run(build(), TASK, deps=Lab())
    steps = await runtime.history(result.run_id)
    assert all(s.status.value == "completed" for s in steps)
    keys = [s.key for s in steps]
    assert {  # research -> investigation -> search / code
        f"{SEARCH_1}/search/turn-1/tool/search#q-1",
        f"{SEARCH_1}/search/turn-4/tool/search#q-4",
        f"{CODE_1}/code/turn-1/tool/compute#c-1",
        f"{CODE_1}/code/turn-1/tool/compute#c-2",
        f"{LEAD}/turn-3/tool/delegate_to_skeptic#rev-1/skeptic/turn-1/tool/review_checklist#checklist",
    } <= set(keys)
    assert max(k.count("/tool/delegate_to_") for k in keys) == 2
    assert delegations(keys, "investigation") == [
        INV_1,
        f"{LEAD}/turn-4/tool/delegate_to_investigation#inv-2",
    ]
    assert keys[-1] == f"{LEAD}/turn-7/model"


async def test_the_loop_guard_warns_the_stubborn_search_worker(runtime: Runtime) -> None:
    model = FunctionModel(stand_in_policy)
    events: list[Event] = [e async for e in runtime.stream(build(model), TASK, deps=Lab())]
    [loop] = [e for e in events if isinstance(e, LoopGuardTriggered)]
    assert (loop.key, loop.kind, loop.subject, loop.times, loop.action) == (
        f"{SEARCH_1}/search/turn-3",
        "tool",
        "search",
        3,
        "warn",
    )
    searching = [r for r in model.requests if "search" in offered(r)]
    told = searching[3].messages[-1]  # the first pass's fourth request, after the third try
    assert isinstance(told, ToolResult) and told.content.startswith("[]\n\n[loop guard] ")
    assert "called search with these arguments 3 times" in told.content
    assert "- attempt 1: []\n- attempt 2: []" in told.content
    before = searching[2].messages[-1]
    assert isinstance(before, ToolResult) and "[loop guard]" not in before.content
    switched = searching[4].messages[-2]  # what it asked once warned
    assert isinstance(switched, ModelResponse)
    assert [c.arguments for c in switched.tool_calls] == ['{"query":"tokenizer"}']


async def test_the_skeptic_objects_once_then_approves(runtime: Runtime) -> None:
    result = await runtime.run(build(), TASK, deps=Lab())
    steps = {s.key: s for s in await runtime.history(result.run_id)}
    reviews = [steps[k].result for k in delegations(list(steps), "skeptic")]
    assert reviews == [
        {"content": f"[stand-in model] Objection: {OBJECTION}", "is_error": False},
        {
            "content": "[stand-in model] Approved: both arms were measured on the same traffic "
            "with enough samples, and the claim quotes its numbers.",
            "is_error": False,
        },
    ]
    second = steps[f"{LEAD}/turn-4/model"].result
    assert isinstance(second, dict)
    [(_, name, arguments)] = second["tool_calls"]  # the investigation goes back with the objection
    assert name == "delegate_to_investigation" and f"Objection to answer: {OBJECTION}" in arguments


def never_convinced(request: ModelRequest) -> ModelResponse:
    """The stand-in team, except a skeptic that objects to everything."""
    if "review_checklist" in offered(request) and "review_checklist" in results(request):
        return say("Objection: I am not convinced. Compare the arms on the same traffic.")
    return stand_in_policy(request)


async def test_a_skeptic_who_never_approves_is_stopped_by_max_rounds(runtime: Runtime) -> None:
    model = FunctionModel(never_convinced)
    events = [e async for e in runtime.stream(build(model), TASK, deps=Lab())]
    assert isinstance(events[-1], RunFinished)
    result = events[-1].result
    assert result.status is RunStatus.FAILED and result.value is None
    assert result.error is not None and result.error["type"] == "MaxTurnsExceeded"
    assert (
        "Supervisor 'research': its manager used all max_rounds=10 rounds without a final answer"
        in result.error["message"]
    )
    leading = [r for r in model.requests if "delegate_to_skeptic" in offered(r)]
    assert len(leading) == 10, "one model request per round, then the bound"
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert len(delegations(keys, "skeptic")) == 3
    assert len(delegations(keys, "investigation")) == 4
    warned = [e.key for e in events if isinstance(e, LoopGuardTriggered)]
    assert any(k.startswith(f"{LEAD}/turn-") for k in warned), "the lead was warned, in vain"


class CrashingLab(CountingLab):
    """The process dies during the second pass's search, after the first pass is journaled."""

    crashed = False

    def find(self, query: str) -> list[dict[str, str]]:
        hits = super().find(query)
        if "same traffic" in query and not self.crashed:
            self.crashed = True
            raise asyncio.CancelledError
        return hits


async def test_a_crash_mid_run_resumes_without_redoing_finished_delegations(
    runtime: Runtime, store: Store
) -> None:
    lab = CrashingLab()
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(build(), TASK, run_id="crash-1", deps=lab)
    assert lab.queries[-1] == "exp-311 same traffic" and len(lab.computed) == 2
    again = store
    if not store.url.startswith("memory"):  # a new process: close, then open the file again
        await runtime.close()
        again = open_store(store.url)
    events: list[Event] = []
    async with Runtime(again, sinks=[events.append]) as resumed:
        done = await resumed.resume("crash-1", runnable=build(), deps=lab)
    assert done.status is RunStatus.COMPLETED and done.output == FINDING
    assert lab.queries == [FIRST_QUERY] * 3 + ["tokenizer"] + ["exp-311 same traffic"] * 2
    assert lab.computed[:2] == ["p95 exp311-control", "p95 exp311-cached"]
    assert len(lab.computed) == 4, "the first pass's computations ran once"
    started = [e.key for e in events if isinstance(e, StepStarted)]
    finished = tuple(f"{LEAD}/turn-{turn}/" for turn in (1, 2, 3))  # the whole first pass
    assert started and not [k for k in started if k.startswith(finished)]
    work = [k for k in started if not re.search(r"/tool/delegate_to_[^/]+$", k)]
    search_2 = f"{LEAD}/turn-4/tool/delegate_to_investigation#inv-2/investigation/coordinator/turn-1/tool/delegate_to_search#find"
    assert work[0] == f"{search_2}/search/turn-1/tool/search#q-1", "resumed at the crash"
    assert not [e for e in events if isinstance(e, LoopGuardTriggered)], (
        "the warned pass is not re-run"
    )
