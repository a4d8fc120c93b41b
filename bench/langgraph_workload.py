"""LangGraph anchor workload: a hand-built ReAct graph driven by a scripted fake model.

Shape (what ``create_react_agent`` builds, minus ``bind_tools`` on a real chat model):

    START -> agent -> (tools_condition) -> tools -> agent -> ... -> END

The "model" is a plain function: it counts the ToolMessages already in state and returns
an AIMessage with one ``lookup`` tool call until ``TOOL_CALLS`` calls have been made, then
``AIMessage(content="done")``. No I/O, no callbacks, no chat-model class.

One run = ``TOOL_CALLS`` tool-call steps; each step is two LangGraph node executions
(agent + tools), plus one final agent node execution that ends the run.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from typing_extensions import TypedDict

TOOL_CALLS = 10
VARIANTS = ("none", "memory", "sqlite", "postgres")
POSTGRES_URL = os.environ.get(
    "ORCHESTRION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
async def lookup(i: int) -> str:
    """Look up item i."""
    return f"item-{i}"


def agent(state: State) -> dict[str, Any]:
    """Fake chat model: scripted tool calls, then a final answer. No I/O."""
    n = sum(1 for m in state["messages"] if isinstance(m, ToolMessage))
    if n < TOOL_CALLS:
        msg = AIMessage(
            content="",
            tool_calls=[
                {"name": "lookup", "args": {"i": n}, "id": f"call_{n}", "type": "tool_call"}
            ],
        )
    else:
        msg = AIMessage(content="done")
    return {"messages": [msg]}


def build_graph(checkpointer: Any = None) -> Any:
    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([lookup]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=checkpointer)


async def run_once(
    graph: Any,
    thread_id: str | int,
    *,
    durability: Literal["sync", "async", "exit"] | None = None,
) -> None:
    """One invocation to completion. ``durability=None`` keeps LangGraph's default ("async")."""
    inputs = {"messages": [HumanMessage(content="go")]}
    if graph.checkpointer is None:
        out = await graph.ainvoke(inputs)
    else:
        config = {"configurable": {"thread_id": str(thread_id)}}
        if durability is None:
            out = await graph.ainvoke(inputs, config)
        else:
            out = await graph.ainvoke(inputs, config, durability=durability)
    last = out["messages"][-1]
    assert last.content == "done" and len(out["messages"]) == 2 + 2 * TOOL_CALLS, out


@asynccontextmanager
async def graph_variant(name: str) -> AsyncIterator[Any]:
    """Yield a compiled graph for variant ``none`` | ``memory`` | ``sqlite`` | ``postgres``.

    ``sqlite`` uses AsyncSqliteSaver on a fresh temp file (removed on exit). The saver must be
    created inside a running event loop (its __init__ calls asyncio.get_running_loop()).
    """
    if name == "none":
        yield build_graph()
    elif name == "memory":
        yield build_graph(InMemorySaver())
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="lg-bench-") as d:
            path = os.path.join(d, "checkpoints.sqlite")
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                await saver.setup()  # create tables outside the timed region
                yield build_graph(saver)
    elif name == "postgres":
        # Its tables in a schema of their own on the bench's server, dropped on exit.
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection

        schema = f"lg_bench_{uuid.uuid4().hex[:8]}"
        async with await AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
                async with AsyncPostgresSaver.from_conn_string(url) as saver:
                    await saver.setup()
                    yield build_graph(saver)
            finally:
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    else:
        raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")
