"""Soak test: many payment runs under injected faults, none lost, none paying twice.

Each run is the "pay off my car loan" story on a fresh SQLite store: a model
reads the loan (`get_balance`, a read tool), pays it (`pay`, a write tool
carrying `ctx.idempotency_key`) and answers. A share of every model and tool
call fails (all fault kinds of `orchestrion.testing.faults`, hangs included);
the primary model sits behind a circuit breaker with a clean fallback model;
and the bank itself sometimes applies a payment and then drops the connection
or never answers (a lost response), so the engine retries the write with the
same key.

Afterwards, from the store and the bank, it checks that:

- every submitted idempotency key has exactly one run, and no other run exists;
  a key submitted again (after its run ended, or racing it) returns the same run;
- every run is `completed` or `failed` (none running, interrupted, stopped:
  no lost run), and a failed run carries an error with a type, a message and a
  cause chain;
- no payment is applied twice: per run and per loan at most one idempotency key
  has an effect, a completed run has exactly one (and reports its receipt),
  and each key applied once;
- the journal and the events agree on retries and fallbacks.

Fault injection is seeded per run (and per model or tool), so each run sees the
same faults whatever the interleaving; timing (hangs, breaker windows) is not.

    make soak    # or: .venv/bin/python bench/soak.py --runs 1000 --rate 0.2 --concurrency 50 --seed 1

Not part of CI. Exit status 0 when every check passes, 1 otherwise (each
violation is printed). `--resume` also resumes every failed run once, under
the same faults, and checks everything again.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrion import (
    Agent,
    Breaker,
    BreakerChanged,
    Event,
    FallbackUsed,
    ModelRequest,
    Policy,
    Retry,
    Retrying,
    RunContext,
    RunRecord,
    RunResult,
    RunStarted,
    RunStatus,
    Runtime,
    StepStatus,
    tool,
    with_policy,
)
from orchestrion._json import loads
from orchestrion.messages import ToolResult, UserMessage
from orchestrion.testing import (
    ConnectionReset,
    Fault,
    Faults,
    FaultyModel,
    FunctionModel,
    Hang,
    Latency,
    Malformed,
    RateLimited,
    ServerError,
    TimedOut,
    call,
    faulty_tool,
)
from orchestrion.testing.models import Scripted

CALL_TIMEOUT = 0.2
"""Seconds a model call, a read and a payment may take: a hang costs this much."""
RETRY = Retry(attempts=4, initial=0.001, max_wait=0.05, jitter=1)
BREAKER = Breaker(failures=12, window=0.02, cooldown=0.01, probes=1)
"""On the primary model, shared by all runs: trips under bursts of failures."""
LOST_RESPONSE_RATE = 0.1
"""Share of the bank's payment calls that apply the payment, then drop the connection."""
HUNG_RESPONSE_RATE = 0.03
"""Share that apply the payment, then never answer (the call times out)."""
RESUBMIT_SHARE = 0.05
"""Share of the keys submitted again once their run has ended."""
RACE_SHARE = 0.01
"""Share of the keys submitted twice at once (the two submissions race)."""
FAULT_KINDS: tuple[Fault, ...] = (
    Latency(0.005),
    Hang(),
    TimedOut(),
    RateLimited(0.005),
    ServerError(503),
    ConnectionReset(),
    Malformed(),
)
TASK = "Pay off my car loan using savings."
TERMINAL = (RunStatus.COMPLETED, RunStatus.FAILED)

RUN: ContextVar[int] = ContextVar("soak_run", default=-1)
"""The index of the run the current task works on: picks its fault stream."""


# -- seeded, per-run randomness ---------------------------------------------------------


class PerRun:
    """One seeded random stream per (target, run), so a run's faults do not depend
    on how the concurrent runs interleave."""

    def __init__(self, seed: int, target: str) -> None:
        self._seed = seed
        self._target = target
        self._streams: dict[int, random.Random] = {}

    def rng(self) -> random.Random:
        run = RUN.get()
        stream = self._streams.get(run)
        if stream is None:
            stream = self._streams[run] = random.Random(f"{self._seed}/{self._target}/{run}")
        return stream


def per_run_faults(rate: float, seed: int, target: str) -> Faults:
    """`Faults.rate` with one seeded stream per run."""
    streams = PerRun(seed, target)

    def pick() -> Fault | None:
        rng = streams.rng()
        return rng.choice(FAULT_KINDS) if rng.random() < rate else None

    return Faults(pick)


# -- the bank -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effect:
    """A payment the bank applied."""

    key: str
    run_id: str
    loan_id: str
    amount: float


def payoff_amount(loan_id: str) -> float:
    """The payoff amount of a loan, fixed by its number."""
    n = int(loan_id.rsplit("-", 1)[1])
    return 1_000 + (n * 37) % 9_000 + 0.5


@dataclass
class Bank:
    """An in-memory payment API honouring idempotency keys: the first call with a
    key applies the payment; a repeat returns the stored receipt. Sometimes the
    response is lost after the payment was applied: the connection drops
    (ConnectionResetError) or the answer never comes (a hang)."""

    seed: int
    lost_rate: float = LOST_RESPONSE_RATE
    hung_rate: float = HUNG_RESPONSE_RATE
    receipts: dict[str, str] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    repeats: int = 0
    """Calls with a key already applied: each one a payment that did not happen twice."""
    lost: int = 0
    hung: int = 0
    _losses: PerRun = field(init=False)

    def __post_init__(self) -> None:
        self._losses = PerRun(self.seed, "bank")

    async def pay(self, run_id: str, key: str, loan_id: str, amount: float) -> str:
        receipt = self.receipts.get(key)
        if receipt is None:
            receipt = self.receipts[key] = f"rcpt-{len(self.effects) + 1:05d}"
            self.effects.append(Effect(key, run_id, loan_id, amount))
        else:
            self.repeats += 1
        draw = self._losses.rng().random()
        if draw < self.lost_rate:
            self.lost += 1
            raise ConnectionResetError("bank: connection reset after applying the payment")
        if draw < self.lost_rate + self.hung_rate:
            self.hung += 1
            await asyncio.Event().wait()  # the payment's timeout ends it
        return receipt


@tool
async def get_balance(ctx: RunContext[Bank], loan_id: str) -> dict[str, Any]:
    """The payoff amount of a car loan and the savings balance.

    Args:
        loan_id: The loan, e.g. "car-0042".
    """
    return {"loan_id": loan_id, "payoff_amount": payoff_amount(loan_id), "savings": 25_000.0}


@tool(effect="write", policy=Policy(retry=RETRY, timeout=CALL_TIMEOUT))
async def pay(ctx: RunContext[Bank], loan_id: str, amount: float) -> dict[str, Any]:
    """Pay `amount` from savings towards a loan. Moves money.

    Args:
        loan_id: The loan to pay, from get_balance.
        amount: The payoff amount.
    """
    receipt = await ctx.deps.pay(ctx.run_id, ctx.idempotency_key, loan_id, amount)
    return {"receipt": receipt, "loan_id": loan_id, "amount": amount}


# -- the model's policy ---------------------------------------------------------------


def decide(request: ModelRequest) -> Scripted:
    """A careful model, deciding from the conversation alone (so a retry, a
    fallback or a replay decides the same): read the loan until a read succeeds,
    pay until a payment succeeds, then answer."""
    task = next(m for m in request.messages if isinstance(m, UserMessage))
    loan_id = loads(task.content)["loan_id"]
    results = [m for m in request.messages if isinstance(m, ToolResult)]
    reads = [r for r in results if r.name == "get_balance"]
    payments = [r for r in results if r.name == "pay"]
    loan = next((loads(r.content) for r in reads if not r.is_error), None)
    if loan is None:
        return call("get_balance", {"loan_id": loan_id}, id=f"read-{len(reads) + 1}")
    paid = next((loads(r.content) for r in payments if not r.is_error), None)
    if paid is None:
        arguments = {"loan_id": loan_id, "amount": loan["payoff_amount"]}
        return call("pay", arguments, id=f"pay-{len(payments) + 1}")
    return f"Paid {paid['amount']:.2f} on {loan_id}; receipt {paid['receipt']}."


def build_agent(rate: float, seed: int) -> tuple[Agent[str], dict[str, Faults]]:
    """The payment agent: a faulty primary model behind a breaker, with a clean
    fallback; faulty tools. Also the fault injectors, by target."""
    faults = {
        "model": per_run_faults(rate, seed, "model"),
        "get_balance": per_run_faults(rate, seed, "get_balance"),
        "pay": per_run_faults(rate, seed, "pay"),
    }
    primary = FaultyModel(FunctionModel(decide, name="primary"), faults["model"])
    backup = FunctionModel(decide, name="backup")
    agent: Agent[str] = Agent(
        name="loan-payoff",
        instructions="Look up the loan, pay it off from savings, then say so.",
        model=with_policy(primary, Policy(breaker=BREAKER, fallback=[backup])),
        tools=[
            faulty_tool(get_balance, faults["get_balance"]),
            faulty_tool(pay, faults["pay"]),
        ],
        max_turns=8,
    )
    return agent, faults


# -- running ------------------------------------------------------------------------------


@dataclass
class Observed:
    """What the event sink and the submissions saw."""

    events: Counter[str] = field(default_factory=Counter)
    breaker: Counter[str] = field(default_factory=Counter)
    started: int = 0
    resumed: int = 0
    resubmitted: int = 0
    raced: int = 0
    violations: list[str] = field(default_factory=list)

    def sink(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            if event.resumed:
                self.resumed += 1
            else:
                self.started += 1
        elif isinstance(event, Retrying):
            self.events[f"retry {event.kind}"] += 1
        elif isinstance(event, FallbackUsed):
            self.events["fallback"] += 1
        elif isinstance(event, BreakerChanged):
            self.breaker[f"{event.old}->{event.new}"] += 1


def run_input(i: int) -> dict[str, str]:
    return {"task": TASK, "loan_id": f"car-{i:05d}"}


async def submit(
    runtime: Runtime,
    agent: Agent[str],
    bank: Bank,
    i: int,
    how: str,
    gate: asyncio.Semaphore,
    seen: Observed,
) -> None:
    """Submit run `i`; `how`: once, again (after it ended) or race (twice at once)."""
    RUN.set(i)
    key = f"soak-{i}"
    try:
        async with gate:
            if how == "race":
                first, twin = await asyncio.gather(
                    runtime.run(agent, run_input(i), deps=bank, idempotency_key=key),
                    runtime.run(agent, run_input(i), deps=bank, idempotency_key=key),
                )
                seen.raced += 1
                check_same(seen, key, first, twin)
                return
            first = await runtime.run(agent, run_input(i), deps=bank, idempotency_key=key)
        if how == "again":
            second = await runtime.run(agent, run_input(i), deps=bank, idempotency_key=key)
            seen.resubmitted += 1
            check_same(seen, key, first, second)
    except Exception as exc:  # a run must end completed or failed, never raise
        seen.violations.append(f"{key}: runtime.run raised {type(exc).__name__}: {exc}")


def check_same(seen: Observed, key: str, first: RunResult[Any], second: RunResult[Any]) -> None:
    if second.run_id != first.run_id or second.status is not first.status:
        seen.violations.append(
            f"{key}: submitted twice, got run {first.run_id} ({first.status}) and "
            f"{second.run_id} ({second.status})"
        )


def submission_plan(runs: int, seed: int) -> dict[int, str]:
    """How each run is submitted: `once`, `again` or `race`, seeded."""
    rng = random.Random(f"{seed}/plan")
    picked = rng.sample(range(runs), round(runs * (RESUBMIT_SHARE + RACE_SHARE)))
    races = round(runs * RACE_SHARE)
    plan = dict.fromkeys(range(runs), "once")
    plan.update(dict.fromkeys(picked[:races], "race"))
    plan.update(dict.fromkeys(picked[races:], "again"))
    return plan


async def resume_failed(
    runtime: Runtime, bank: Bank, gate: asyncio.Semaphore, seen: Observed
) -> int:
    """Resume every failed run once (under the same faults); how many were."""
    failed = await runtime.list(status=RunStatus.FAILED, limit=1_000_000)

    async def one(record: RunRecord) -> None:
        RUN.set(int(str(record.idempotency_key).rsplit("-", 1)[1]))
        try:
            async with gate:
                await runtime.resume(record.id, deps=bank)
        except Exception as exc:
            seen.violations.append(f"resume {record.id}: raised {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(r) for r in failed))
    return len(failed)


# -- checking ---------------------------------------------------------------------------


@dataclass
class Report:
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    journal: Counter[str] = field(default_factory=Counter)
    failed_paid: int = 0
    """Failed runs whose payment was applied (a resume finishes them, same key)."""
    duplicates: int = 0
    lost: int = 0
    violations: list[str] = field(default_factory=list)


async def check(runtime: Runtime, bank: Bank, runs: int, seen: Observed) -> Report:
    """Every check of the module docstring, from the store and the bank."""
    report = Report(violations=list(seen.violations))
    records = await runtime.list(limit=10 * runs + 100)
    check_keys(records, runs, seen, report)
    paid = check_bank(records, bank, report)
    for record in records:
        check_run(record, paid.get(record.id, set()), bank, report)
        await scan_journal(runtime, record, report)
    journal, events = report.journal, seen.events
    for what, journaled, emitted in (
        ("model retries", journal["retry model"], events["retry model"]),
        ("tool retries", journal["retry tool"], events["retry tool"]),
        ("fallbacks", journal["fallback"], events["fallback"]),
    ):
        if journaled != emitted:
            report.violations.append(f"{what}: {journaled} journaled, {emitted} events")
    return report


def check_keys(records: Sequence[RunRecord], runs: int, seen: Observed, report: Report) -> None:
    """One run per submitted key; no run without one; resubmissions started none."""
    by_key = Counter(r.idempotency_key for r in records)
    for i in range(runs):
        count = by_key.pop(f"soak-{i}", 0)
        if count != 1:
            report.lost += count == 0
            report.violations.append(f"soak-{i}: {count} runs in the store (expected 1)")
    for key, count in by_key.items():
        report.violations.append(f"{count} run(s) with unexpected idempotency key {key!r}")
    if seen.started != runs:
        report.violations.append(f"{seen.started} runs started for {runs} distinct keys")


def check_bank(records: Sequence[RunRecord], bank: Bank, report: Report) -> dict[str, set[str]]:
    """No payment applied twice; the keys each run paid with, by run id."""
    ids = {r.id for r in records}
    by_run: dict[str, set[str]] = {}
    by_loan: dict[str, set[str]] = {}
    for effect in bank.effects:
        by_run.setdefault(effect.run_id, set()).add(effect.key)
        by_loan.setdefault(effect.loan_id, set()).add(effect.key)
        if effect.run_id not in ids:
            report.violations.append(f"payment {effect.key} by unknown run {effect.run_id}")
        if effect.amount != payoff_amount(effect.loan_id):
            report.violations.append(f"payment {effect.key}: {effect.amount} on {effect.loan_id}")
    for run_id, keys in by_run.items():
        if len(keys) > 1:
            report.violations.append(f"run {run_id} paid {len(keys)} times: {sorted(keys)}")
    for loan_id, keys in by_loan.items():
        if len(keys) > 1:
            report.duplicates += len(keys) - 1
            report.violations.append(f"loan {loan_id} paid {len(keys)} times: {sorted(keys)}")
    if len(bank.effects) != len({e.key for e in bank.effects}):
        report.violations.append(f"{len(bank.effects)} effects for {len(bank.receipts)} keys")
    return by_run


def check_run(record: RunRecord, paid: set[str], bank: Bank, report: Report) -> None:
    """Completed with exactly one payment, whose receipt it reports; or cleanly
    failed, with at most one."""
    status = RunStatus(record.status)
    report.statuses[status.value] += 1
    if status not in TERMINAL:
        report.lost += 1
        report.violations.append(f"run {record.id} ({record.idempotency_key}) is {status.value}")
        return
    if status is RunStatus.COMPLETED:
        if len(paid) != 1:
            report.violations.append(f"run {record.id} completed with {len(paid)} payments")
        elif bank.receipts[next(iter(paid))] not in str(record.output):
            report.violations.append(f"run {record.id} reports another receipt: {record.output}")
        return
    report.failed_paid += len(paid) == 1
    error = record.error if isinstance(record.error, dict) else {}
    kind, message, chain = error.get("type"), error.get("message"), error.get("cause_chain")
    cause = chain[0].get("type") if isinstance(chain, list) and chain else None
    report.failures[f"{kind} ({cause})" if cause else str(kind)] += 1
    if not kind or not message or not isinstance(chain, list):
        report.violations.append(f"run {record.id} failed without a clean error: {error!r}")
    elif kind in ("ToolError", "WriteUncertain") and not chain:
        report.violations.append(f"run {record.id}: {kind} without its cause: {message}")


async def scan_journal(runtime: Runtime, record: RunRecord, report: Report) -> None:
    """Count journaled retries and fallbacks; a completed run has no step left open."""
    latest: dict[str, StepStatus] = {}
    for entry in await runtime.store.load(record.id):
        latest[entry.key] = entry.status
        result = entry.result if isinstance(entry.result, dict) else {}
        if entry.status is StepStatus.FAILED and "fallback" in result:
            report.journal["fallback"] += 1
            if "retry_in" in result:  # a failed attempt says what came next: one thing
                report.violations.append(f"{record.id} {entry.key}: both fallback and retry_in")
        elif entry.status is StepStatus.FAILED and "retry_in" in result:
            report.journal[f"retry {entry.kind}"] += 1
        elif (
            entry.status is StepStatus.COMPLETED and entry.kind == "model" and "fallback" in result
        ):
            report.journal["answered by fallback"] += 1
    if record.status == RunStatus.COMPLETED:
        open_steps = [k for k, s in latest.items() if s is not StepStatus.COMPLETED]
        if open_steps:
            report.violations.append(f"run {record.id} completed with open steps {open_steps}")


# -- reporting ---------------------------------------------------------------------------


def counted(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


def print_report(
    args: argparse.Namespace,
    report: Report,
    seen: Observed,
    faults: dict[str, Faults],
    bank: Bank,
    wall: float,
    breakers: str,
) -> None:
    line = "{:<30}{}".format
    print(
        f"\nsoak: {args.runs} runs, fault rate {args.rate:g}, concurrency {args.concurrency}, "
        f"seed {args.seed}" + (", failed runs resumed once" if args.resume else "")
    )
    print(line("runs", f"{sum(report.statuses.values())} ({counted(report.statuses)})"))
    print(line("failed by error type", counted(report.failures)))
    print(line("  of which payment applied", report.failed_paid))
    for target, injected in faults.items():
        kinds = Counter(type(f).__name__ for f in injected.injected)
        print(
            line(
                f"faults injected: {target}",
                f"{len(injected.injected)} of {injected.calls} calls ({counted(kinds)})",
            )
        )
    print(line("bank: lost responses", f"{bank.lost} reset, {bank.hung} hung (payment applied)"))
    print(line("bank: repeated keys", f"{bank.repeats} (stored receipt returned, not paid again)"))
    j = report.journal
    print(line("retries (journal)", f"model {j['retry model']}, tool {j['retry tool']}"))
    print(
        line(
            "fallbacks (journal)",
            f"{j['fallback']} to the backup model, {j['answered by fallback']} answered by it",
        )
    )
    print(line("breaker transitions", counted(seen.breaker)))
    print(line("breakers at the end", breakers))
    print(line("payments applied", f"{len(bank.effects)} for {len(bank.receipts)} keys"))
    print(line("duplicated effects", report.duplicates))
    print(line("lost runs", report.lost))
    print(line("resubmissions checked", f"{seen.resubmitted} after the end, {seen.raced} racing"))
    if args.resume:
        print(line("failed runs resumed", seen.resumed))
    print(line("wall time", f"{wall:.1f} s ({args.runs / wall:.0f} runs/s)"))
    for violation in report.violations:
        print(f"VIOLATION: {violation}")
    verdict = "FAIL" if report.violations else "OK: every check passed"
    print(f"\n{verdict}" + (f" ({len(report.violations)} violations)" if report.violations else ""))


async def soak(args: argparse.Namespace, tmp: Path) -> bool:
    random.seed(args.seed)  # retry jitter
    agent, faults = build_agent(args.rate, args.seed)
    bank = Bank(seed=args.seed)
    seen = Observed()
    gate = asyncio.Semaphore(args.concurrency)
    policy = Policy(timeout=CALL_TIMEOUT, retry=RETRY)
    async with Runtime(f"sqlite:///{tmp / 'soak.db'}", policy=policy, sinks=[seen.sink]) as rt:
        started = time.perf_counter()
        plan = submission_plan(args.runs, args.seed)
        await asyncio.gather(
            *(submit(rt, agent, bank, i, how, gate, seen) for i, how in plan.items())
        )
        if args.resume:
            await resume_failed(rt, bank, gate, seen)
        wall = time.perf_counter() - started
        report = await check(rt, bank, args.runs, seen)
        breakers = ", ".join(f"{b.name} {b.state}" for b in await rt.breakers()) or "none"
    print_report(args, report, seen, faults, bank, wall, breakers)
    return not report.violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.2, help="share of calls given a fault")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="resume failed runs once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ok = asyncio.run(soak(args, Path(tmp)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
