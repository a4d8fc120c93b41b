"""What flowed in a run, read from its journal alone (`orchestrion show RUN --graph`):
which agents worked, who gave them their work, which tools they called, and what
each cost.

An *activation* is one run of an agent: the scope its turns are keyed under. Who
gave it its work is read from where that scope sits, the nearest level up that says:

    .../lead/turn-1/tool/delegate_to_w#d/w    a tool call of `lead` ran it: delegates
    .../billing/fallback/b    `billing` (or the fallback before `b`) gave up to `b`
    .../hop-2/b          the agent of hop 1 handed off (Handoff)
    .../step-2/m         the last agent of step 1 passed its output on (Sequential)
    .../branch-0/m       the input fans out (Concurrent); `aggregate/m`: the branches
    .../turn-3/speaker   the selector of `select-3`, else turn 2's speaker (GroupChat);
    .../select-3/host    turn 2's speaker
    .../round-3/b        whoever sent `b` mail in round 2 (PeerNetwork)

and, at the top, the run's input. An agent node counts its activations, the ones
that failed, and its own model calls; an edge counts how often work went along it
(a message edge: the messages sent) and what that work cost, everything done under
it included, so nested delegations are counted on every edge above them. An
activation fed by several agents (mail from several peers, a fan-out's branches)
has its cost shared among them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrion import keys
from orchestrion._json import loads
from orchestrion.engine.costs import Spent, spent_in
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import GaveUp, ModelResponded, StepReturned, ToolReturned, read
from orchestrion.engine.result import StepInfo
from orchestrion.graph.model import Cluster, Flowed, Graph, Node
from orchestrion.graph.structure import INPUT
from orchestrion.messages import ToolCall, Usage

_MAIL = "send_message"
"""The tool a peer network gives its agents to write to each other (in `round-N` scopes)."""
_FOLLOWS = {"hop": "hands off", "step": "next", "turn": "speaks after"}
"""Numbered members that take over from the member before them, and the edge's kind."""
_INBOX = "inbox"
"""The stem of the steps in which a peer in its own run takes its mail (`inbox-N`)."""
_USER = "user"
"""The sender of the mail that carries a peer network's input."""
_FALLBACK = keys.last(keys.fallback_scope("x"))
"""The segment under which an agent's fallback agents are keyed."""


@dataclass(slots=True)
class _Activation:
    scope: str
    agent: str
    parts: tuple[keys.Part, ...]
    first: int
    last: int
    """The sequence numbers of its first and last steps."""
    failed: bool = False
    """A step of it failed for good, or it gave up and a fallback took over."""


@dataclass(frozen=True, slots=True)
class _Source:
    node: str
    kind: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class _Queued:
    """How a run came to be drawn: who queued it, if an agent did (its input comes
    from them), and in which cluster; both None for the run asked about."""

    by: _Source | None
    cluster: str | None


@dataclass(slots=True)
class _Journal:
    """A run's steps, indexed for the questions the graph asks."""

    activations: dict[str, _Activation] = field(default_factory=dict)
    within: dict[str, list[_Activation]] = field(default_factory=lambda: defaultdict(list))
    """The activations at or below each scope (of any activation's ancestors)."""
    spent: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    """The model usage at or below each scope."""
    calls: dict[str, ToolCall] = field(default_factory=dict)
    """The tool call each tool step's key was made for."""
    mail: dict[tuple[str, int, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    """(network scope, round, recipient) -> the senders of each message sent in that round."""
    letters: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    """(a peer's run scope, turn) -> the senders of the mail that turn acted on (an agent
    of a `PeerNetwork` with mailboxes, in its own run)."""
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(sender, recipient) -> the messages sent."""
    spending: list[Spent] = field(default_factory=list)
    """What each completed model step spent, in journal order."""
    tool_steps: list[tuple[str, str, StepInfo]] = field(default_factory=list)
    """(agent, tool, step) of each tool step, in journal order."""
    submitted: dict[str, str] = field(default_factory=dict)
    """The id of each run queued with `ctx.submit` -> the key of the step that did."""
    handovers: dict[tuple[str, str], str] = field(default_factory=dict)
    """(the primary agent's scope, a fallback agent) -> the agent that gave up to it."""
    exits: dict[str, Counter[str]] = field(default_factory=dict)
    """`_exits` of each scope asked about, worked out once."""


def flow(
    title: str,
    steps: Sequence[StepInfo],
    submitted: Mapping[str, Sequence[StepInfo]] | None = None,
) -> Graph:
    """The graph of what flowed in the run whose steps (`Runtime.history`) are `steps`,
    and in the runs it queued (`ctx.submit`: a `PeerNetwork`'s agents with mailboxes)
    whose steps `submitted` has by run id: their agents join the graph, reached from
    the agent that queued them, or through the mail they read."""
    graph = Graph(title=title, kind="flow")
    graph.node(Node(INPUT, "input", "input"))
    _draw(graph, steps, submitted or {}, _Queued(None, None), set())
    for edge in list(graph.edges.values()):  # every end is an agent that ran; made sure of
        graph.node(Node(edge.source, "agent", edge.source))
    return graph


def _draw(
    graph: Graph,
    steps: Sequence[StepInfo],
    submitted: Mapping[str, Sequence[StepInfo]],
    queued: _Queued,
    seen: set[str],
) -> None:
    """Add one run's flow, a run queued as `queued` says."""
    journal = _read(steps)
    via = queued.by
    for act in sorted(journal.activations.values(), key=lambda a: a.first):
        cluster = _cluster(graph, journal, act.parts[:-1], queued.cluster)
        node = graph.node(Node(act.agent, "agent", act.agent, cluster=cluster))
        node.cluster = node.cluster or cluster  # made before it ran (mail waiting for it)
        flowed = _flowed(node)
        flowed.count += 1
        flowed.errors += act.failed
        sources = _sources(journal, act)
        if via is not None:
            sources = [via if s == _Source(INPUT, "input") else s for s in sources]
        shares = _shares(journal.spent[act.scope], [s.weight for s in sources])
        for source, share in zip(sources, shares, strict=True):
            edge = graph.edge(source.node, act.agent, source.kind)
            edge.flowed = edge.flowed or Flowed()
            if source.kind != "messages":  # messages are counted where they are sent
                edge.flowed.count += 1
            edge.flowed.usage += share
    for (sender, to), count in journal.sent.items():
        graph.node(Node(to, "agent", to))  # mail may wait for an agent that never ran
        edge = graph.edge(sender, to, "messages")
        edge.flowed = edge.flowed or Flowed()
        edge.flowed.count += count
    _steps(graph, journal, steps)
    for run_id, key in journal.submitted.items():
        if run_id in submitted and run_id not in seen:
            seen.add(run_id)
            by = _queued_by(journal, key) or via
            within = _cluster(graph, journal, keys.parse(key).parts[:-1], queued.cluster)
            _draw(graph, submitted[run_id], submitted, _Queued(by, within), seen)


def _cluster(
    graph: Graph, journal: _Journal, parts: tuple[keys.Part, ...], parent: str | None
) -> str | None:
    """The cluster of the patterns a scope (its `parts`) lies in, inside `parent`, added
    to `graph` if new: the named levels of its key that are neither agents nor numbered
    members, outermost first (an agent in two places is drawn in the first)."""
    for j, part in enumerate(parts):
        plain = part.turn is None and keys.numbered_of(part.text) is None
        if not plain or part.text in (_FALLBACK, "aggregate"):
            continue
        if keys.join(parts[: j + 1]) in journal.activations:
            continue  # an agent, whose tool call ran what follows
        at = part.text if parent is None else f"{parent}:{part.text}"
        graph.clusters.setdefault(at, Cluster(at, part.text, parent))
        parent = at
    return parent


def _queued_by(journal: _Journal, key: str) -> _Source | None:
    """The agent whose tool queued a run at step `key`; None when a workflow did."""
    for scope in reversed(keys.ancestors(key)):
        act = journal.activations.get(scope)
        if act is not None:
            return _Source(act.agent, "submits")
    return None


def _read(steps: Sequence[StepInfo]) -> _Journal:
    journal = _Journal()
    gave_up: list[StepInfo] = []
    for step in steps:
        if step.kind == "fallback":
            gave_up.append(step)
            continue
        parsed = keys.parse(step.key)
        if parsed.kind not in ("model", "tool"):
            continue
        scope = keys.join(parsed.parts[:-1])
        act = journal.activations.get(scope)
        if act is None:
            act = _Activation(scope, parsed.agent or "?", parsed.parts[:-1], step.seq, step.seq)
            journal.activations[scope] = act
        act.first, act.last = min(act.first, step.seq), max(act.last, step.seq)
        act.failed = act.failed or step.status is StepStatus.FAILED
        if parsed.kind == "tool":
            journal.tool_steps.append((act.agent, parsed.tool or "?", step))
        elif step.status is StepStatus.COMPLETED:
            record = read(step.kind, step.status, step.result, f"Step {step.key}")
            if isinstance(record, ModelResponded):
                one = spent_in(step, record)
                journal.spending.append(one)
                for scope_above in keys.ancestors(step.key):
                    journal.spent[scope_above] += one.usage
                turn = keys.parent(step.key) or ""
                made = record.response.tool_calls
                journal.calls.update(zip(keys.tool_keys(turn, made), made, strict=True))
    for act in journal.activations.values():
        for scope in (*keys.ancestors(act.scope), act.scope):
            journal.within[scope].append(act)
    for step in gave_up:
        _gave_up(journal, step)
    _inboxes(journal, steps)
    for step in steps:
        _mail(journal, step)
    return journal


def submitted_runs(steps: Sequence[StepInfo]) -> list[str]:
    """The ids of the runs queued (`ctx.submit`) by the run whose steps are `steps`."""
    return [run for run in map(_queued, steps) if run is not None]


def _queued(step: StepInfo) -> str | None:
    """The id of the run a completed `ctx.submit` step queued."""
    if not keys.is_submit(step.key) or step.status is not StepStatus.COMPLETED:
        return None
    record = read(step.kind, step.status, step.result, f"Step {step.key}")
    value = record.value if isinstance(record, StepReturned) else None
    return value if isinstance(value, str) else None


def _inboxes(journal: _Journal, steps: Sequence[StepInfo]) -> None:
    """Note the runs this one queued, and what each turn of a peer in its own run read:
    its `inbox-N` steps, in order, each with letters (`{"id", "from", ...}`) feeding
    its next turn."""
    turns: Counter[str] = Counter()
    for step in steps:
        if step.kind != "step" or step.status is not StepStatus.COMPLETED:
            continue
        queued = _queued(step)
        if queued is not None:
            journal.submitted[queued] = step.key
            continue
        numbered = keys.numbered_of(keys.last(step.key))
        if numbered is None or numbered[0] != _INBOX:
            continue
        record = read(step.kind, step.status, step.result, f"Step {step.key}")
        value = record.value if isinstance(record, StepReturned) else None
        if not isinstance(value, list):
            continue
        senders = [m.get("from") for m in value if isinstance(m, dict) and "id" in m]
        if senders:
            scope = keys.parent(step.key) or ""
            turns[scope] += 1
            named = [s if isinstance(s, str) and s != _USER else INPUT for s in senders]
            journal.letters[(scope, turns[scope])] = named


def _gave_up(journal: _Journal, step: StepInfo) -> None:
    """Note an agent that gave up (`<its key>/gave-up`), and to which fallback."""
    record = read(step.kind, step.status, step.result, f"Step {step.key}")
    member = keys.parent(step.key)
    act = journal.activations.get(member or "")
    if not isinstance(record, GaveUp) or act is None:
        return
    act.failed = True
    at_fallback = len(act.parts) > 2 and act.parts[-2].text == _FALLBACK
    primary = keys.join(act.parts[:-2]) if at_fallback else act.scope
    journal.handovers[(primary, record.fallback)] = record.agent


def _mail(journal: _Journal, step: StepInfo) -> None:
    """Note a message a peer network's agent sent: a `send_message` call in `round-N`,
    or in a turn of a peer in its own run."""
    if step.kind != "tool" or step.status is not StepStatus.COMPLETED:
        return
    call = journal.calls.get(step.key)
    parsed = keys.parse(step.key)
    if call is None or call.name != _MAIL or len(parsed.parts) < 3:
        return
    numbered = keys.numbered_of(parsed.parts[-3].text)
    network = keys.join(parsed.parts[:-3])
    record = read(step.kind, step.status, step.result, f"Step {step.key}")
    in_round = numbered is not None and numbered[0] == "round"
    in_own_run = numbered is not None and (network, numbered[1]) in journal.letters
    if not (in_round or in_own_run) or not isinstance(record, ToolReturned) or record.is_error:
        return
    try:
        to = loads(call.arguments).get("to")
    except (ValueError, AttributeError):
        return
    if isinstance(to, str) and numbered is not None:
        sender = parsed.agent or "?"
        journal.sent[(sender, to)] += 1
        if in_round:
            journal.mail[(network, numbered[1], to)].append(sender)


def _sources(journal: _Journal, act: _Activation) -> list[_Source]:
    """Who gave `act` its work: the nearest level above its scope that says (see above),
    each agent once, weighted by how many times it fed it."""
    parts = act.parts
    kind = "input"
    for j in range(len(parts) - 2, -1, -1):
        part, scope = parts[j], keys.join(parts[:j])
        if part.tool is not None and j:
            return [_Source(parts[j - 1].name, "delegates")]
        if part.text == _FALLBACK and j and scope in journal.activations:
            gave_up = journal.handovers.get((scope, act.agent), parts[j - 1].name)
            return [_Source(gave_up, "falls back")]
        if part.text == "aggregate":
            branches = _numbered_scopes(journal, scope, "branch")
            if branches:
                fed = Counter[str]()
                for branch in branches:
                    fed.update(_exits(journal, branch))
                return _weighted(fed, "aggregates")
        numbered = keys.numbered_of(part.text) if part.turn is None else None
        if numbered is None:
            continue
        found = _numbered_sources(journal, act, scope, *numbered)
        if found:
            return found
        if numbered[0] == "branch":
            kind = "fans out"
    return [_Source(INPUT, kind)]


def _weighted(fed: Counter[str], kind: str) -> list[_Source]:
    return [_Source(node, kind, weight) for node, weight in fed.items()]


def _numbered_sources(
    journal: _Journal, act: _Activation, scope: str, stem: str, n: int
) -> list[_Source]:
    def after(stem: str) -> list[_Source]:
        at = keys.child(scope, keys.numbered(stem, n - 1))
        return _weighted(_exits(journal, at), _FOLLOWS[stem]) if n > 0 else []

    match stem:
        case "hop" | "step":
            return after(stem)
        case "turn":
            if (scope, n) in journal.letters:  # a peer in its own run, woken by mail
                fed = Counter(journal.letters[(scope, n)])
                return [
                    _Source(s, "input" if s == INPUT else "messages", w) for s, w in fed.items()
                ]
            selector = keys.child(scope, keys.numbered("select", n))
            if selector in journal.within:
                return _weighted(_exits(journal, selector), "selects")
            return after("turn")
        case "select":  # the selector reads the chat after each turn
            return after("turn")
        case "round":
            return _weighted(Counter(journal.mail.get((scope, n - 1, act.agent), ())), "messages")
    return []


def _numbered_scopes(journal: _Journal, scope: str, stem: str) -> list[str]:
    found: list[str] = []
    while (at := keys.child(scope, keys.numbered(stem, len(found)))) in journal.within:
        found.append(at)
    return found


def _exits(journal: _Journal, scope: str) -> Counter[str]:
    """The agents whose output left `scope`: the last to finish in it, or in each branch
    of the Concurrent it is (when it has no aggregator), with how many branches each."""
    known = journal.exits.get(scope)
    if known is not None:
        return known
    acts = journal.within.get(scope, [])
    groups: dict[str, list[_Activation]] = defaultdict(list)
    depth = len(keys.parse(scope).parts) if scope else 0
    for act in acts:
        for part in act.parts[depth:-1]:  # to the first level that says how it ran
            numbered = keys.numbered_of(part.text)
            if part.text == "aggregate" or (numbered and numbered[0] == "branch"):
                groups[part.text].append(act)
            if part.tool is not None or numbered or part.text == "aggregate":
                break
    if "aggregate" in groups or not groups:
        pool = groups.get("aggregate") or acts
        exits = Counter([max(pool, key=lambda a: a.last).agent] if pool else [])
    else:
        exits = Counter(max(g, key=lambda a: a.last).agent for g in groups.values())
    journal.exits[scope] = exits
    return exits


def _steps(graph: Graph, journal: _Journal, steps: Sequence[StepInfo]) -> None:
    """Each agent's own model calls and models, and its tool calls (delegations and
    mail are edges)."""
    hosts = {scope for act in journal.activations.values() for scope in keys.ancestors(act.scope)}
    models: dict[str, dict[str, None]] = defaultdict(dict)
    for one in journal.spending:
        _flowed(graph.nodes[one.agent]).usage += one.usage
        models[one.agent][one.model] = None
    for agent, tool, step in journal.tool_steps:
        call = journal.calls.get(step.key)
        if step.key not in hosts and not (call and call.name == _MAIL):
            _tool_call(graph, agent, tool, step)
    for agent, named in models.items():
        graph.nodes[agent].detail = ", ".join(named)


def _tool_call(graph: Graph, agent: str, tool: str, step: StepInfo) -> None:
    node = graph.node(Node(f"{agent}:{tool}", "tool", tool, cluster=graph.nodes[agent].cluster))
    flowed = _flowed(node)
    flowed.count += 1
    failed = step.status is StepStatus.FAILED
    if step.status is StepStatus.COMPLETED:
        record = read(step.kind, step.status, step.result, f"Step {step.key}")
        failed = isinstance(record, ToolReturned) and record.is_error
    flowed.errors += failed
    graph.edge(agent, node.id, "calls")


def _flowed(node: Node) -> Flowed:
    if node.flowed is None:
        node.flowed = Flowed()
    return node.flowed


def _shares(used: Usage, weights: list[int]) -> list[Usage]:
    """`used` split in proportion to `weights`, whole tokens that add up to it (what
    the division leaves goes to the first ones)."""
    total = sum(weights)

    def split(value: int) -> list[int]:
        parts = [value * w // total for w in weights]
        left = value - sum(parts)
        return [p + (i < left) for i, p in enumerate(parts)]

    fields = zip(
        split(used.input_tokens), split(used.output_tokens), split(used.requests), strict=True
    )
    return [
        Usage(i, o, r, used.cost * w / total) for (i, o, r), w in zip(fields, weights, strict=True)
    ]
