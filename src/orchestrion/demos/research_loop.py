"""Research loop: "Does caching the tokenizer cut our p95 latency?", answered by a
hierarchy of supervisors that loops until a skeptic approves.

The lead of `research` delegates to `investigation` (itself a supervisor whose
coordinator delegates to a `search` worker over the team's notes and a `code`
worker that computes latency statistics), then to `analysis`, which turns the
findings into a claim, then to `skeptic`, which approves the claim or raises one
specific objection. On an objection the lead sends the investigation back with
it. Offline, the skeptic objects once (the first comparison mixes two loads) and
approves the second pass; the answer is a typed `Finding`.

Two guards keep the loop finite:
- `LoopGuard` on `search`: a worker that repeats an identical tool call (the same
  query that found nothing) wastes calls without learning anything; at the
  third repeat the guard tells it, listing its earlier attempts and their
  results, and it changes its query. The offline search worker is that stubborn.
- `Supervisor(max_rounds=...)` on `research`: a skeptic that never approves, or
  a lead that never stops re-investigating, would cycle forever; the lead's
  model turns are bounded, and past them the run fails with `MaxTurnsExceeded`.
  (`max_depth`, left at its default of 3, bounds how deep delegations nest: this
  team is two deep.)

The runnable definitions live here, inside the package, so `orchestrion demo`
works from an installed wheel; `examples/research_loop.py` imports and runs them.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrion._json import dumps_str, loads
from orchestrion.agent import Agent
from orchestrion.context import RunContext
from orchestrion.demos.stand_in import PREFIX, calls, first_text, offered, results, say, unprefixed
from orchestrion.guards import LoopGuard
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall, ToolResult
from orchestrion.models.base import Model
from orchestrion.patterns.supervisor import Supervisor
from orchestrion.tools.tool import ModelRetry, tool

__all__ = [
    "MAX_ROUNDS",
    "TASK",
    "Document",
    "Finding",
    "Lab",
    "Metric",
    "agent",
    "build",
    "stand_in_policy",
    "team",
]

TASK = "Does caching the tokenizer cut our p95 latency?"

MODEL = os.environ.get("ORCHESTRION_MODEL") or "stand-in:research-loop"

MAX_ROUNDS = 10
"""The lead's model turns: three per investigate-analyse-review pass, so at most
three passes and the answer."""


class Finding(BaseModel):
    """The research team's answer to a question."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    answer: str
    """The answer in a sentence or two, with the size of the effect."""
    evidence: list[str]
    """The documents and measurements the answer rests on."""
    objections_resolved: list[str]
    """The skeptic's objections that a further investigation answered."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


DOCUMENTS = (
    Document(
        "EXP-311",
        "Tokenizer cache A/B test on the inference gateway",
        "The cached arm keeps each model's tokenizer in memory instead of loading it per "
        "request. Control ran Mon-Wed at 1,900 req/s, the cached arm Thu-Sat at 1,150 req/s. "
        "Request latency in ms: datasets exp311-control and exp311-cached.",
    ),
    Document(
        "PR-4821",
        "Cache tokenizer instances per model",
        "An LRU of 8 tokenizers, so requests stop paying the 35-60 ms tokenizer load.",
    ),
    Document(
        "LOADTEST-12",
        "Replay of recorded traffic against both EXP-311 arms",
        "Tuesday's recorded gateway traffic (1,500 req/s) replayed against each EXP-311 arm "
        "on the same hosts, one arm after the other. Request latency in ms: datasets "
        "replay-control and replay-cached.",
    ),
    Document(
        "RUNBOOK-7",
        "Gateway p95 latency alert",
        "Page the on-call when p95 latency stays above 250 ms for 10 minutes; check recent "
        "deploys and load first.",
    ),
)


def _latencies(seed: int, floor: float, tail: float, n: int = 2000) -> tuple[float, ...]:
    """Request latencies in ms: a floor plus an exponential tail. Seeded
    `random.Random.random` gives the same numbers on every Python version."""
    rng = random.Random(seed)
    return tuple(round(floor - tail * math.log(1.0 - rng.random()), 1) for _ in range(n))


def _datasets() -> dict[str, tuple[float, ...]]:
    return {  # the A/B arms differ by load as well as by the cache; the replay does not
        "exp311-control": _latencies(3111, 82.0, 33.0),
        "exp311-cached": _latencies(3112, 60.0, 24.0),
        "replay-control": _latencies(1201, 78.0, 33.0),
        "replay-cached": _latencies(1202, 68.0, 27.0),
    }


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9-]*", text.lower())


QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
Metric = Literal["p50", "p95", "p99", "mean"]


@dataclass
class Lab:
    """The stand-in research systems: a search index over notes, and latency datasets."""

    documents: tuple[Document, ...] = DOCUMENTS
    datasets: Mapping[str, tuple[float, ...]] = field(default_factory=_datasets)

    def find(self, query: str) -> list[dict[str, str]]:
        wanted = set(_words(query))
        return [
            {"id": d.id, "title": d.title, "text": d.text}
            for d in self.documents
            if wanted and wanted <= set(_words(f"{d.id} {d.title} {d.text}"))
        ]

    def measure(self, metric: Metric, dataset: str) -> dict[str, object]:
        samples = self.datasets.get(dataset)
        if samples is None:
            raise ModelRetry(f"No dataset {dataset!r}; the datasets are {sorted(self.datasets)}.")
        if metric == "mean":
            value = round(sum(samples) / len(samples), 1)
        else:  # nearest rank
            value = sorted(samples)[math.ceil(QUANTILES[metric] * len(samples)) - 1]
        return {"dataset": dataset, "metric": metric, "value_ms": value, "n": len(samples)}


LAB = Lab()


def _lab(ctx: RunContext[Lab | None]) -> Lab:
    return ctx.deps or LAB


@tool
async def search(ctx: RunContext[Lab | None], query: str) -> list[dict[str, str]]:
    """The team's notes (experiment logs, load tests, PRs, runbooks) containing every
    word of the query.

    Args:
        query: A few keywords; a document must contain all of them, so fewer words find more.
    """
    return _lab(ctx).find(query)


@tool
async def compute(ctx: RunContext[Lab | None], metric: Metric, dataset: str) -> dict[str, object]:
    """A latency statistic over a dataset of request latencies (ms). A fixed
    computation over in-process data: no code is evaluated.

    Args:
        metric: "p50", "p95", "p99" (nearest-rank percentiles) or "mean".
        dataset: A dataset named in the notes, e.g. "exp311-control".
    """
    return _lab(ctx).measure(metric, dataset)


CHECKLIST = (
    "Both arms were measured under the same load (the same traffic, or a replay of it).",
    "Each arm has at least 1,000 samples.",
    "The claim states the size of the effect and quotes the numbers it rests on.",
)
MIN_SAMPLES = 1000


@tool
async def review_checklist() -> list[str]:
    """What a claim about a performance change must satisfy before it is approved."""
    return list(CHECKLIST)


# The stand-in policy: one function per agent, told apart by the tools each is offered.

STOPWORDS = frozenset({"a", "an", "and", "do", "does", "for", "in", "is", "of", "on", "our", "the"})


def _search(request: ModelRequest) -> ModelResponse:
    task = first_text(request)
    topic = re.search(r"Find documents about: (.+)", task)
    query = " ".join(w for w in _words(topic.group(1) if topic else task) if w not in STOPWORDS)
    asked = [
        loads(c.arguments)["query"]
        for m in request.messages
        if isinstance(m, ModelResponse)
        for c in m.tool_calls
        if c.name == "search"
    ]
    tries = [m for m in request.messages if isinstance(m, ToolResult) and m.name == "search"]
    if not tries:
        return _query(query, 1)
    found = tries[-1].content.partition("\n\n[loop guard]")[0]
    hits = [] if tries[-1].is_error else loads(found)
    if hits:
        lines = [f"Found {len(hits)} document(s) for '{asked[-1]}':"]
        lines += [f"- {h['id']}, {h['title']}: {h['text']}" for h in hits]
        return say("\n".join(lines))
    if not any("[loop guard]" in t.content for t in tries):
        # Like a stubborn model, retry the query that found nothing, until told.
        return _query(asked[-1], len(tries) + 1)
    broader = max(query.split(), key=len, default=query)  # the most specific single word
    if asked[-1] == broader:
        return say(f"Nothing in the notes matches '{query}' or '{broader}'.")
    return _query(broader, len(tries) + 1)


def _query(query: str, attempt: int) -> ModelResponse:
    return calls(ToolCall(f"q-{attempt}", "search", dumps_str({"query": query})))


def _code(request: ModelRequest) -> ModelResponse:
    task = first_text(request)
    asked = re.search(r"Compute (p50|p95|p99|mean) of datasets ([\w-]+) and ([\w-]+)", task)
    if asked is None:
        return say(f"I could not read a metric and two datasets in {task!r}.")
    metric, names = asked.group(1), asked.group(2, 3)
    done = [m for m in request.messages if isinstance(m, ToolResult) and m.name == "compute"]
    if not done:  # both datasets at once
        return calls(
            *(
                ToolCall(f"c-{i}", "compute", dumps_str({"metric": metric, "dataset": name}))
                for i, name in enumerate(names, 1)
            )
        )
    failed = [m for m in done if m.is_error]
    if failed:
        return say(f"I could not compute {metric}: {failed[0].content}")
    values = [loads(m.content) for m in done]
    parts = ", ".join(f"{v['dataset']} {v['value_ms']:.1f} ms (n={v['n']})" for v in values)
    return say(f"{metric} latency: {parts}.")


def _coordinator(request: ModelRequest) -> ModelResponse:
    task, done = first_text(request), results(request)
    failed = [r for r in done.values() if r.is_error]
    if failed:
        return say(f"Investigation incomplete: {failed[0].name} failed: {failed[0].content}")
    if "delegate_to_search" not in done:
        objection = re.search(r"Objection to answer: (.+)", task)
        if objection:  # look for data that settles it
            experiment = re.search(r"EXP-\d+", objection.group(1))
            topic = f"{experiment.group(0) if experiment else ''} same traffic".strip()
        else:
            question = re.search(r"Question: (.+)", task)
            topic = question.group(1) if question else task
        return _delegate("search", "find", f"Find documents about: {topic}")
    found = unprefixed(done["delegate_to_search"].content)
    data = re.search(r"datasets ([\w-]+) and ([\w-]+)", found)
    if data is None:
        return say(f"Investigation found no data to measure. {found}")
    if "delegate_to_code" not in done:
        return _delegate(
            "code", "measure", f"Compute p95 of datasets {data.group(1)} and {data.group(2)}."
        )
    return say(f"Findings:\n{found}\n{unprefixed(done['delegate_to_code'].content)}")


def _analysis(request: ModelRequest) -> ModelResponse:
    findings = first_text(request)
    measured = re.search(r"^\w+ latency: .+$", findings, re.M)
    arms = re.findall(r"([\w-]+) (\d+(?:\.\d+)?) ms \(n=\d+\)", measured[0] if measured else "")
    if measured is None or len(arms) != 2:
        return say(f"No claim: the findings do not measure two arms. {findings}")
    (before_name, before), (after_name, after) = sorted(arms, key=lambda a: "cached" in a[0])
    cut = (float(before) - float(after)) / float(before) * 100
    verdict = (
        f"Yes: caching the tokenizer cuts p95 latency by {cut:.0f}%"
        if cut > 0
        else "No: caching the tokenizer does not cut p95 latency"
    )
    evidence = [line for line in findings.splitlines() if line.startswith("- ")]
    evidence.append(f"- {measured[0]}")
    claim = f"Claim: {verdict}, {before} ms -> {after} ms ({before_name} vs {after_name})."
    return say("\n".join([claim, "Evidence:", *evidence]))


def _skeptic(request: ModelRequest) -> ModelResponse:
    if "review_checklist" not in results(request):
        return calls(ToolCall("checklist", "review_checklist", "{}"))
    claim = first_text(request)
    loaded = next((line for line in claim.splitlines() if "req/s" in line), "")
    rates = list(dict.fromkeys(re.findall(r"(\d[\d,]*) req/s", loaded)))
    if len(rates) > 1:
        experiment = re.search(r"EXP-\d+", loaded)
        where = f"In {experiment.group(0)} the" if experiment else "The"
        return say(
            f"Objection: {where} arms ran at different load ({' vs '.join(rates)} req/s, on "
            "different days), so lower load alone could explain the lower p95. Compare the arms "
            "on the same traffic."
        )
    small = [n for n in map(int, re.findall(r"n=(\d+)", claim)) if n < MIN_SAMPLES]
    if small:
        return say(
            f"Objection: an arm has only {small[0]} samples; measure at least {MIN_SAMPLES:,}."
        )
    return say(
        "Approved: both arms were measured on the same traffic with enough samples, and the "
        "claim quotes its numbers."
    )


def _lead(request: ModelRequest) -> ModelResponse:
    question = first_text(request)
    done = [m for m in request.messages if isinstance(m, ToolResult)]
    if not done:
        task = (
            f"Question: {question}\nFind the experiments that answer it and compute p95 "
            "latency for each arm."
        )
        return _delegate("investigation", "inv-1", task)
    last, passes = done[-1], sum(m.name == "delegate_to_investigation" for m in done)
    if last.is_error:
        return _final(f"I could not finish: {last.name} failed: {last.content}", [], [])
    said = _unguarded(last.content)
    if last.name == "delegate_to_investigation":
        return _delegate("analysis", f"ana-{passes}", said)
    if last.name == "delegate_to_analysis":
        return _delegate("skeptic", f"rev-{passes}", said)
    reviews = [_unguarded(m.content) for m in done if m.name == "delegate_to_skeptic"]
    objections = [r.removeprefix("Objection: ") for r in reviews if not r.startswith("Approved")]
    if not said.startswith("Approved"):  # investigate again, with the objection
        task = (
            f"Question: {question}\nObjection to answer: {objections[-1]}\nFind data that "
            "settles the objection and compute p95 latency for each arm."
        )
        return _delegate("investigation", f"inv-{passes + 1}", task)
    claims = [_unguarded(m.content) for m in done if m.name == "delegate_to_analysis"]
    lines = claims[-1].splitlines()
    answer = lines[0].removeprefix("Claim: ")
    first = re.search(r"by (\d+%)", claims[0])
    if len(claims) > 1 and first:
        answer += f" A first estimate of {first.group(1)} was withdrawn after the skeptic's review."
    evidence = [line.removeprefix("- ") for line in lines if line.startswith("- ")]
    return _final(answer, evidence, objections)


def _unguarded(content: str) -> str:
    """A worker's answer without the stand-in prefix or a loop guard's note. This lead
    does not heed the notes: its `max_rounds` is what ends a loop it cannot leave."""
    return unprefixed(content.partition("\n\n[loop guard]")[0])


def _delegate(worker: str, call_id: str, task: str) -> ModelResponse:
    return calls(ToolCall(call_id, f"delegate_to_{worker}", dumps_str({"task": task})))


def _final(answer: str, evidence: list[str], objections: list[str]) -> ModelResponse:
    finding = Finding(answer=PREFIX + answer, evidence=evidence, objections_resolved=objections)
    return calls(ToolCall("final", "final_result", finding.model_dump_json()))


def stand_in_policy(request: ModelRequest) -> ModelResponse:
    """One policy for the whole team: the asking agent is known by the tools it is offered."""
    tools = offered(request)
    if "delegate_to_investigation" in tools:
        return _lead(request)
    if "delegate_to_search" in tools:
        return _coordinator(request)
    if "search" in tools:
        return _search(request)
    if "compute" in tools:
        return _code(request)
    if "review_checklist" in tools:
        return _skeptic(request)
    return _analysis(request)


def build(model: Model | str = MODEL, *, max_rounds: int = MAX_ROUNDS) -> Supervisor:
    """The research team, every agent on `model` (tests pass a recording or altered model)."""
    search_worker = Agent(
        name="search",
        instructions=(
            "You search the team's notes with `search`, using a few keywords. Report each "
            "document found with its id, title and full text."
        ),
        model=model,
        tools=[search],
        loop_guard=LoopGuard(repeats=3, policy="warn"),
        description="Searches the team's notes: experiment logs, load tests, PRs, runbooks.",
    )
    code = Agent(
        name="code",
        instructions=(
            "You compute latency statistics with `compute`, exactly as asked, and report each "
            "value with its dataset and sample count: 'p95 latency: A 181.0 ms (n=2000), ...'."
        ),
        model=model,
        tools=[compute],
        description="Computes p50, p95, p99 or mean latency over named datasets.",
    )
    coordinator = Agent(
        name="coordinator",
        instructions=(
            "You run an investigation. Ask search for the documents about the topic; pick the "
            "two datasets that compare the arms and ask code for the p95 of both. If you were "
            "given an objection, look for data that settles it. Report the documents and the "
            "numbers."
        ),
        model=model,
    )
    investigation = Supervisor(
        name="investigation",
        manager=coordinator,
        workers=[search_worker, code],
        max_rounds=5,
        description="Finds the experiments about a question and measures their data.",
    )
    analysis = Agent(
        name="analysis",
        instructions=(
            "You turn findings into one claim: 'Claim: Yes: ...' or 'Claim: No: ...' with the "
            "size of the effect and its numbers, then 'Evidence:' and one '- ' line per "
            "document or measurement it rests on. Claim only what the numbers show."
        ),
        model=model,
        description="Turns an investigation's findings into one claim with its evidence.",
    )
    skeptic = Agent(
        name="skeptic",
        instructions=(
            "You review claims. Read the review checklist and check the claim against each "
            "item. Answer 'Approved: ...' if it passes, else 'Objection: ...' with the one most "
            "important specific problem and the data that would settle it."
        ),
        model=model,
        tools=[review_checklist],
        description="Reviews a claim and its evidence: approves it or raises one objection.",
    )
    lead = Agent(
        name="lead",
        instructions=(
            "You lead a research team answering an engineering question with data. Ask "
            "investigation to find and measure the data, then analysis for a claim, then "
            "skeptic to review it. If the skeptic objects, send investigation back with the "
            "question and the objection quoted, then analysis and skeptic again. When the "
            "skeptic approves, give the final answer: the claim, its evidence and the "
            "objections resolved."
        ),
        model=model,
        output_type=Finding,
    )
    return Supervisor(
        name="research",
        manager=lead,
        workers=[investigation, analysis, skeptic],
        max_rounds=max_rounds,
        description="Answers an engineering question with data, until a skeptic approves.",
    )


team = build()
agent = team  # `orchestrion demo` runs `<demo module>:agent`
