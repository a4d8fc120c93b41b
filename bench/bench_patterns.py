"""Pattern overhead: a 1,000-branch fan-out and a supervisor making ten delegations.

Side by side in one process:

1. Fan-out: 1,000 branches that each ``await asyncio.sleep(0.01)``. Bare
   ``asyncio.gather`` (the floor), orchestrion ``Concurrent`` on the memory store
   and on a SQLite file, LangGraph ``Send`` fan-out (a list channel with an
   ``operator.add`` reducer) without a checkpointer and with ``InMemorySaver``.
2. Supervisor: a manager delegating one task per turn, cycling over three workers,
   ten times, then answering; workers answer at once. orchestrion ``Supervisor``
   with ``FunctionModel`` fakes; LangGraph anchor: ``langgraph_supervisor.create_supervisor``
   (``create_react_agent`` workers) with a fake chat model, no network.

    .venv/bin/python bench/bench_patterns.py --repeat 5

A fan-out keeps about 15 objects per pending branch alive, so runs trigger the
interpreter's full garbage collections, whose cost grows with the whole heap
(LangGraph's modules included, as they are loaded in this process): that is
most of the p90 column, for every variant.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, measure, table

from orchestrion import Agent, Concurrent, Runtime, Supervisor, workflow
from orchestrion.context import RunContext
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call

BRANCHES = 1000
SLEEP = 0.01
DELEGATIONS = 10
WORKERS = ("w0", "w1", "w2")


# --- 1. fan-out ---------------------------------------------------------------------------


async def sleeper() -> int:
    await asyncio.sleep(SLEEP)
    return 1


async def bare_gather(_: int) -> None:
    out = await asyncio.gather(*(sleeper() for _ in range(BRANCHES)))
    assert sum(out) == BRANCHES


@workflow(name="work")
async def work(ctx: RunContext[Any], input: Any) -> int:
    await asyncio.sleep(SLEEP)
    return 1


async def orchestrion_fanout_rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    fan = Concurrent(name="fan", branches=[work] * BRANCHES)
    rows = []
    for name, url in (
        ("orchestrion memory", "memory://"),
        ("orchestrion sqlite", f"sqlite:///{tmp / 'fan.db'}"),
    ):
        async with Runtime(url) as runtime:

            async def one(i: int, runtime: Runtime = runtime) -> None:
                result = await runtime.run(fan, "go")
                out = result.output
                assert out is not None and len(out) == BRANCHES and all(r["ok"] for r in out)

            rows.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), BRANCHES))
    return rows


# --- LangGraph anchors (module level: get_type_hints must resolve the state types) --------

LANGGRAPH_MISSING = ""
try:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send
    from typing_extensions import TypedDict
except ImportError as exc:  # the bench extra is not installed
    LANGGRAPH_MISSING = str(exc)
else:

    class FanState(TypedDict):
        done: Annotated[list[int], operator.add]

    class Item(TypedDict):
        i: int

    def start(state: FanState) -> dict[str, Any]:
        return {}

    def fan_out(state: FanState) -> list[Send]:
        return [Send("work", {"i": i}) for i in range(BRANCHES)]

    async def work_node(item: Item) -> dict[str, Any]:
        await asyncio.sleep(SLEEP)
        return {"done": [item["i"]]}

    def build(checkpointer: Any = None) -> Any:
        g = StateGraph(FanState)
        g.add_node("start", start)
        g.add_node("work", work_node)  # type: ignore[arg-type]
        g.add_edge(START, "start")
        g.add_conditional_edges("start", fan_out, ["work"])
        g.add_edge("work", END)
        return g.compile(checkpointer=checkpointer)


async def langgraph_fanout_rows(warmup: int, repeat: int) -> list[Row]:
    if LANGGRAPH_MISSING:
        print(f"LangGraph not installed ({LANGGRAPH_MISSING}): pip install -e '.[bench]'")
        return []
    rows = []
    for name, checkpointer in (
        ("langgraph Send", None),
        ("langgraph Send memory", InMemorySaver()),
    ):
        graph = build(checkpointer)

        async def one(i: int, graph: Any = graph, name: str = name) -> None:
            config = {"configurable": {"thread_id": f"{name}{i}"}, "recursion_limit": 10}
            out = await graph.ainvoke({"done": []}, config)
            assert len(out["done"]) == BRANCHES

        rows.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), BRANCHES))
    return rows


# --- 2. supervisor ------------------------------------------------------------------------


def manager_plan(request: ModelRequest) -> object:
    done = sum(1 for m in request.messages if isinstance(m, ToolResult))
    if done < DELEGATIONS:
        worker = WORKERS[done % len(WORKERS)]
        return call(f"delegate_to_{worker}", {"task": f"task {done}"}, id=f"d{done}")
    return "all done"


def worker_answer(request: ModelRequest) -> str:
    return "ok"


async def orchestrion_supervisor_rows(warmup: int, repeat: int, tmp: Path) -> list[Row]:
    manager = FunctionModel(manager_plan)
    worker_models = [FunctionModel(worker_answer) for _ in WORKERS]
    team = Supervisor(
        name="team",
        manager=Agent(name="manager", model=manager),
        workers=[Agent(name=w, model=m) for w, m in zip(WORKERS, worker_models, strict=True)],
        max_rounds=DELEGATIONS + 1,
    )
    rows = []
    for name, url in (
        ("orchestrion memory", "memory://"),
        ("orchestrion sqlite", f"sqlite:///{tmp / 'sup.db'}"),
    ):
        async with Runtime(url) as runtime:

            async def one(i: int, runtime: Runtime = runtime) -> None:
                result = await runtime.run(team, "go")
                assert result.output == "all done", result

            rows.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), DELEGATIONS))
    runs = 2 * (warmup + repeat)  # every turn and delegation really ran, on both stores
    assert len(manager.requests) == runs * (DELEGATIONS + 1), len(manager.requests)
    assert sum(len(m.requests) for m in worker_models) == runs * DELEGATIONS
    return rows


async def langgraph_supervisor_rows(warmup: int, repeat: int) -> list[Row]:
    try:
        from langchain_core.language_models.chat_models import BaseChatModel
        from langchain_core.messages import AIMessage, BaseMessage
        from langchain_core.outputs import ChatGeneration, ChatResult
        from langgraph.prebuilt import create_react_agent
        from langgraph_supervisor import create_supervisor
    except ImportError as exc:
        print(f"langgraph-supervisor not installed ({exc}): pip install langgraph-supervisor")
        return []

    class FakeChat(BaseChatModel):
        """Plain-function fake chat model: no I/O, no network."""

        role: str = "worker"

        @property
        def _llm_type(self) -> str:
            return "fake"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        async def _agenerate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            return self._generate(messages, stop, run_manager, **kw)

        def _generate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> ChatResult:
            if self.role == "worker":
                msg = AIMessage(content="ok")
            else:
                done = sum(
                    1
                    for m in messages
                    if isinstance(m, AIMessage)
                    for c in m.tool_calls
                    if c["name"].startswith("transfer_to_")
                )
                if done < DELEGATIONS:
                    worker = WORKERS[done % len(WORKERS)]
                    msg = AIMessage(
                        content="",
                        tool_calls=[
                            {
                                "name": f"transfer_to_{worker}",
                                "args": {},
                                "id": f"d{done}",
                                "type": "tool_call",
                            }
                        ],
                    )
                else:
                    msg = AIMessage(content="all done")
            return ChatResult(generations=[ChatGeneration(message=msg)])

    with warnings.catch_warnings():  # create_react_agent: moved to langchain.agents in v1
        warnings.simplefilter("ignore")
        workers = [create_react_agent(model=FakeChat(), tools=[], name=w) for w in WORKERS]
    builder = create_supervisor(workers, model=FakeChat(role="manager"))
    rows = []
    for name, checkpointer in (
        ("langgraph create_supervisor", None),
        ("langgraph create_supervisor memory", InMemorySaver()),
    ):
        graph = builder.compile(checkpointer=checkpointer)

        async def one(i: int, graph: Any = graph, name: str = name) -> None:
            config = {"configurable": {"thread_id": f"{name}{i}"}, "recursion_limit": 200}
            out = await graph.ainvoke({"messages": [{"role": "user", "content": "go"}]}, config)
            messages = out["messages"]
            assert messages[-1].content == "all done", messages[-1]
            answers = [m for m in messages if m.type == "ai" and m.content == "ok"]
            assert len(answers) == DELEGATIONS, messages  # every worker really ran

        rows.append(Row(name, await measure(one, warmup=warmup, repeat=repeat), DELEGATIONS))
    return rows


# --- main ---------------------------------------------------------------------------------


def ratios(rows: list[Row], pairs: list[tuple[str, str]]) -> None:
    by = {r.name: r for r in rows}
    for a, b in pairs:
        if a in by and b in by:
            print(f"  {b} / {a}: {by[b].stats.median_ms / by[a].stats.median_ms:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    w, r = args.warmup, args.repeat
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fan = [Row("asyncio.gather", await measure(bare_gather, warmup=w, repeat=r), BRANCHES)]
        fan += await orchestrion_fanout_rows(w, r, tmp)
        fan += await langgraph_fanout_rows(w, r)
        sup = await orchestrion_supervisor_rows(w, r, tmp)
        sup += await langgraph_supervisor_rows(w, r)

    print(f"\n1. fan-out: {BRANCHES} branches x asyncio.sleep({SLEEP}); warmup={w} repeat={r}")
    print("   (ms/step = ms per branch; goal: orchestrion <= 40 ms wall per run)\n")
    table(fan, baseline="asyncio.gather")
    print("\n   overhead above the floor (median ms/run), and anchor ratios:")
    floor = fan[0].stats.median_ms
    for row in fan[1:]:
        goal = ""
        if row.name.startswith("orchestrion"):
            goal = "  (goal <= 40 ms: " + ("met" if row.stats.median_ms <= 40 else "NOT met") + ")"
        print(f"  {row.name:24} +{row.stats.median_ms - floor:.1f} ms{goal}")
    ratios(
        fan,
        [
            ("orchestrion memory", "langgraph Send"),
            ("orchestrion memory", "langgraph Send memory"),
            ("orchestrion sqlite", "langgraph Send memory"),
        ],
    )

    print(f"\n2. supervisor: 3 workers, {DELEGATIONS} delegations (one per manager turn)")
    print(
        "   (ms/step = ms per delegation; LangGraph anchor: langgraph_supervisor.create_supervisor)\n"
    )
    table(sup, baseline="orchestrion memory")
    print("\n   anchor ratios:")
    ratios(
        sup,
        [
            ("orchestrion memory", "langgraph create_supervisor"),
            ("orchestrion memory", "langgraph create_supervisor memory"),
            ("orchestrion sqlite", "langgraph create_supervisor memory"),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
