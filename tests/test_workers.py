"""A queue of runs and `orchestrion worker` processes, on a real SQLite file and on
the local PostgreSQL: every run done once by several workers, a worker SIGKILLed
mid-payment and its runs finished elsewhere with the same idempotency keys, a
SIGTERM drain, answers given from another process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrion import Runtime
from orchestrion.engine.journal import RunRecord, RunStatus
from orchestrion.engine.store import open_store

TARGET = str(Path(__file__).parent / "workers" / "target.py")
pytestmark = pytest.mark.slow
ORCHESTRION = (sys.executable, "-m", "orchestrion")


class Fleet:
    """A store, an effects log, and worker processes on them."""

    def __init__(self, tmp_path: Path, store: str, **env: str) -> None:
        self.tmp = tmp_path
        self.store = store
        self.effects = tmp_path / "effects.jsonl"
        self.env = {**os.environ, "WK_EFFECTS": str(self.effects), "COLUMNS": "250", **env}
        self.procs: list[subprocess.Popen[str]] = []

    def submit(self, count: int, attr: str = "agent", **options: object) -> list[str]:
        os.environ["WK_EFFECTS"] = str(self.effects)  # the target is imported here too

        async def go() -> list[str]:
            async with Runtime(self.store) as runtime:
                return [
                    await runtime.submit(f"{TARGET}:{attr}", f"job {i}", **options)  # type: ignore[arg-type]
                    for i in range(count)
                ]

        return asyncio.run(go())

    def worker(self, *args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrion", "worker", "--store", self.store, *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> tuple[int, str, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrion", *args, "--store", self.store],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.returncode, proc.stdout, proc.stderr

    def runs(self) -> dict[str, RunRecord]:
        async def go() -> list[RunRecord]:
            store = open_store(self.store, read_only=True)
            try:
                return await store.list_runs(limit=10_000)
            finally:
                await store.close()

        return {r.id: r for r in asyncio.run(go())}

    def log(self, event: str) -> list[dict[str, object]]:
        if not self.effects.exists():
            return []
        lines = self.effects.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == event]

    def wait(self, done: object, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"never {what}: {[p.communicate() for p in self.procs]}")
            time.sleep(0.05)

    def all_done(self, ids: list[str], status: RunStatus = RunStatus.COMPLETED) -> bool:
        runs = self.runs()
        return all(runs[i].status is status for i in ids)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def fleet(tmp_path: Path, process_store_url: str) -> object:
    made = Fleet(tmp_path, process_store_url)
    yield made
    made.stop()


def test_three_workers_drain_a_queue_with_every_run_done_once(fleet: Fleet) -> None:
    ids = fleet.submit(30)
    assert fleet.runs()[ids[0]].status is RunStatus.QUEUED
    workers = [
        fleet.worker("--until-idle", "--concurrency", "2", WK_SLEEP="0.05") for _ in range(3)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    runs = fleet.runs()
    assert all(runs[i].status is RunStatus.COMPLETED for i in ids), Counter(
        r.status for r in runs.values()
    )
    assert all(runs[i].lease is None and runs[i].token == 1 for i in ids)
    effects = fleet.log("effect")
    assert sorted(e["run"] for e in effects) == sorted(ids)  # each run paid once
    assert not fleet.log("duplicate")
    # Each run worked in one worker only, and the work was shared.
    by_run = {run: {e["pid"] for e in fleet.log("lookup") if e["run"] == run} for run in ids}
    assert all(len(pids) == 1 for pids in by_run.values())
    assert len({pid for pids in by_run.values() for pid in pids}) >= 2


def test_a_worker_killed_mid_payment_has_its_runs_finished_by_another_with_the_same_keys(
    fleet: Fleet,
) -> None:
    gate = fleet.tmp / "gate"
    ids = fleet.submit(3)
    doomed = fleet.worker("--concurrency", "3", "--lease-ttl", "2", WK_GATE=str(gate))
    fleet.wait(lambda: len(fleet.log("start")) == 3, "started three payments")
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=10)
    killed_at = time.time()
    gate.touch()

    survivor = fleet.worker("--lease-ttl", "2", "--poll", "0.5")
    fleet.wait(lambda: fleet.all_done(ids), "finished the killed worker's runs")
    survivor.send_signal(signal.SIGTERM)
    _, err = survivor.communicate(timeout=30)
    assert survivor.returncode == 0, err

    starts = fleet.log("start")
    assert len(starts) == 6  # each payment started in both workers...
    keys = {run: {e["key"] for e in starts if e["run"] == run} for run in ids}
    assert all(len(k) == 1 for k in keys.values())  # ...with the same idempotency key
    effects = fleet.log("effect")
    assert sorted(e["run"] for e in effects) == sorted(ids)  # and took effect once
    assert all(run.token == 2 for run in fleet.runs().values())
    # Taken over within 5 s of the lease's end (2 s after the kill at the latest).
    restarted = min(float(e["at"]) for e in starts if e["pid"] == survivor.pid)  # type: ignore[arg-type]
    assert restarted - killed_at < 2 + 5


def test_sigterm_lets_runs_reach_a_step_boundary_and_puts_them_back(fleet: Fleet) -> None:
    step_gate = fleet.tmp / "steps"
    ids = fleet.submit(2)
    worker = fleet.worker("--concurrency", "2", WK_STEP_GATE=str(step_gate))
    fleet.wait(lambda: len(fleet.log("lookup")) == 2, "started both lookups")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert worker.poll() is None  # waiting for the steps under way...
    step_gate.touch()
    _, err = worker.communicate(timeout=30)  # ...which finish, then it exits
    assert worker.returncode == 0, err
    assert "worker stopped" in err

    runs = fleet.runs()
    assert all(runs[i].status is RunStatus.QUEUED and runs[i].lease is None for i in ids)
    assert len(fleet.log("looked")) == 2  # the steps under way finished
    assert not fleet.log("start")  # and no payment began

    finisher = fleet.worker("--until-idle")
    _, err = finisher.communicate(timeout=60)
    assert finisher.returncode == 0, err
    assert fleet.all_done(ids)
    # Nothing done before the drain was done again: each lookup ran once per run.
    lookups = Counter((e["run"], e["n"]) for e in fleet.log("looked"))
    assert set(lookups.values()) == {1} and len(lookups) == 4
    assert sorted(e["run"] for e in fleet.log("effect")) == sorted(ids)


def test_a_run_answered_from_another_process_is_continued_by_a_worker(fleet: Fleet) -> None:
    [run_id] = fleet.submit(1, "approved", idempotency_key="order-1")
    assert fleet.submit(1, "approved", idempotency_key="order-1") == [run_id]
    first = fleet.worker("--until-idle")
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    record = fleet.runs()[run_id]
    assert record.status is RunStatus.INTERRUPTED
    approval = str(record.pending[0]["id"])  # type: ignore[index]

    code, _, err = fleet.cli("resume", run_id, "--approve", approval, "--max-model-calls", "5")
    assert code == 2 and "start the workers with --max-model-calls" in err
    code, out, err = fleet.cli("resume", run_id, "--approve", approval)
    assert code == 0, err
    assert "queued" in out and f"orchestrion show {run_id}" in out
    record = fleet.runs()[run_id]
    assert record.status is RunStatus.QUEUED and record.lease is None
    code, _, err = fleet.cli("resume", run_id, "--reject", approval)
    assert code == 2 and "already answered" in err

    second = fleet.worker("--until-idle")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    record = fleet.runs()[run_id]
    assert record.status is RunStatus.COMPLETED and record.pending == []
    assert [e["run"] for e in fleet.log("effect")] == [run_id]


def test_a_breaker_opened_by_one_worker_stops_the_calls_of_another(fleet: Fleet) -> None:
    # On PostgreSQL, and on SQLite (the processes of one machine).
    first = fleet.submit(2, "flaky")
    one = fleet.worker("--until-idle", "--concurrency", "1")
    _, err = one.communicate(timeout=60)
    assert one.returncode == 0, err
    assert len(fleet.log("model")) == 2  # two transient failures: the circuit opens
    assert all(fleet.runs()[i].status is RunStatus.FAILED for i in first)

    later = fleet.submit(2, "flaky")
    other = fleet.worker("--until-idle")
    _, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    assert [e["pid"] for e in fleet.log("model")] == [one.pid, one.pid]  # none sent
    for run_id in later:
        record = fleet.runs()[run_id]
        assert record.status is RunStatus.FAILED
        assert "circuit for test:flaky-model is open" in json.dumps(record.error)


def test_two_workers_draw_model_calls_from_one_rate_limit(fleet: Fleet) -> None:
    # On PostgreSQL, and on SQLite (the processes of one machine).
    ids = fleet.submit(4, "limited")  # two model calls each: eight wanted
    workers = [fleet.worker("--until-idle", WK_RATE="3") for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

    calls = fleet.log("model")
    assert len(calls) == 3  # three a minute, both workers together
    runs = fleet.runs()
    statuses = Counter(runs[i].status for i in ids)
    assert statuses[RunStatus.COMPLETED] + statuses[RunStatus.STOPPED] == 4
    assert statuses[RunStatus.COMPLETED] <= 1
    for run_id in ids:
        if runs[run_id].status is RunStatus.STOPPED:
            assert runs[run_id].error["type"] == "RateLimitReached"  # type: ignore[index]


def test_a_run_on_a_worker_is_followed_live_from_other_processes(fleet: Fleet) -> None:
    redis_url = os.environ.get("ORCHESTRION_TEST_REDIS", "redis://127.0.0.1:6379/0")
    gate = fleet.tmp / "steps"
    [run_id] = fleet.submit(1)

    def follower(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*ORCHESTRION, "show", run_id, "--follow", "--json", "--store", fleet.store, *args],
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    on_bus, on_journal = follower("--bus", redis_url), follower()
    printed: dict[subprocess.Popen[str], list[str]] = {on_bus: [], on_journal: []}
    readers = [
        threading.Thread(target=lambda p=p: printed[p].extend(p.stdout or ()), daemon=True)  # type: ignore[misc]
        for p in printed
    ]
    for reader in readers:
        reader.start()
    worker = fleet.worker("--bus", redis_url, WK_STEP_GATE=str(gate))
    fleet.wait(lambda: len(fleet.log("lookup")) == 1, "started a lookup")
    # Both follow the run live: each has printed what it did so far, and waits on.
    fleet.wait(lambda: all(printed.values()), "printed the run's first steps")
    assert on_bus.poll() is None and on_journal.poll() is None
    gate.touch()

    for reader in readers:
        reader.join(timeout=60)  # each follower stops, once the run has
    for proc in printed:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0, err
    events = [json.loads(line) for line in printed[on_bus]]
    assert events[0]["type"] == "RunStarted" and events[-1]["type"] == "RunFinished"
    assert events[-1]["status"] == "completed" and events[-1]["output"] == "paid 100"
    assert sum(e["type"] == "StepCompleted" and e["kind"] == "tool" for e in events) == 3
    steps = [json.loads(line) for line in printed[on_journal]]
    assert {s["key"] for s in steps} >= {"payer/turn-1/model", "payer/turn-4/model"}
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
    import redis

    redis.Redis.from_url(redis_url).delete(f"orchestrion:events:{run_id}")


def test_a_queue_in_memory_is_refused(tmp_path: Path) -> None:
    for command in (["submit", f"{TARGET}:agent"], ["worker", "--until-idle"]):
        done = subprocess.run(
            [*ORCHESTRION, *command, "--store", "memory://"], capture_output=True, text=True
        )
        assert done.returncode == 2 and "lives and dies with one process" in done.stderr


PEERS = str(Path(__file__).parent / "workers" / "peers.py")


def test_a_peer_network_spread_over_two_workers_survives_one_killed(fleet: Fleet) -> None:
    """alice and bob (`tests/workers/peers.py`) run on two workers and ping-pong six
    times over Redis Streams; the worker holding the network and one of them is
    SIGKILLed mid-conversation, a third takes its runs over, and every message is
    still posted once, in order, and acted on."""
    from orchestrion.bus.redis_mail import RedisMailboxes, networks
    from tests.workers.peers import PREFIX, REDIS_URL

    async def submit() -> str:
        async with Runtime(fleet.store) as runtime:
            return await runtime.submit(f"{PEERS}:ping_pong", "start 6")

    run_id = asyncio.run(submit())
    slow = {"WK_SLEEP": "0.3"}
    # A full worker puts back a run that has only waited --poll seconds to take another:
    # a long --poll here, so that the other agent goes to the other worker.
    doomed = fleet.worker("--concurrency", "2", "--lease-ttl", "2", "--poll", "30", **slow)
    fleet.wait(lambda: fleet.runs()[run_id].status is RunStatus.RUNNING, "claimed the network")
    other = fleet.worker("--concurrency", "1", "--lease-ttl", "2", **slow)  # one agent each
    fleet.wait(lambda: len(fleet.log("bob")) >= 2, "bob answered two pings")
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=10)
    survivor = fleet.worker("--concurrency", "3", "--lease-ttl", "2", "--poll", "0.5", **slow)
    fleet.wait(lambda: fleet.all_done([run_id]), "finished the network", timeout=90)
    for proc in (other, survivor):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

    runs = fleet.runs()
    assert runs[run_id].output == "done after 6"
    peers = {r.name: r for r in runs.values() if r.id != run_id}
    assert {r.status for r in peers.values()} == {RunStatus.COMPLETED}
    # The agents ran on two workers at once, then the killed one's runs moved on.
    first = {e["event"]: e["pid"] for e in reversed(fleet.log("alice") + fleet.log("bob"))}
    assert first["alice"] != first["bob"]
    assert {doomed.pid, other.pid} == {first["alice"], first["bob"]}
    assert runs[run_id].token >= 2  # taken over from the killed worker
    # Every message was posted once and in order, and none is left in flight.
    [network] = [n for n in asyncio.run(networks(REDIS_URL, PREFIX)) if n["run_id"] == run_id]
    assert network["outcome"] == "finish" and network["in_flight"] == 0

    async def messages() -> list[object]:
        mailboxes = RedisMailboxes(REDIS_URL, prefix=PREFIX)
        try:
            return list(await mailboxes.messages(str(network["box"])))
        finally:
            await mailboxes.aclose()

    posted = asyncio.run(messages())
    assert [m["content"] for m in posted] == [  # type: ignore[index,call-overload]
        "start 6",
        *(f"{word} {k} of 6" for k in range(1, 7) for word in ("ping", "pong")),
    ]
    # Each ping was acted on; a turn cut off by the kill was taken again (a model call,
    # not an effect: the message it sent was posted once all the same).
    pings = Counter(e["mail"] for e in fleet.log("bob"))
    assert set(pings) == {f"Message from alice:\nping {k} of 6" for k in range(1, 7)}
    assert all(n <= 2 for n in pings.values())


def test_cancelling_a_peer_network_from_another_process_stops_its_agents(fleet: Fleet) -> None:
    async def submit() -> str:
        async with Runtime(fleet.store) as runtime:
            return await runtime.submit(f"{PEERS}:ping_pong", "start 100")

    run_id = asyncio.run(submit())
    worker = fleet.worker("--lease-ttl", "1.5", WK_SLEEP="0.1")
    fleet.wait(lambda: len(fleet.log("bob")) >= 2, "bob answered two pings")
    code, _, err = fleet.cli("cancel", run_id)
    assert code == 0, err
    runs = fleet.runs()
    assert {r.name: r.status for r in runs.values()} == {
        "ping-pong": RunStatus.CANCELLED,
        "ping-pong.alice": RunStatus.CANCELLED,
        "ping-pong.bob": RunStatus.CANCELLED,
    }
    # The worker finds its leases taken (its next heartbeat) and lets go of the runs.
    time.sleep(1.5)
    answered = len(fleet.log("bob"))
    time.sleep(0.5)
    assert len(fleet.log("bob")) == answered  # nothing works on them any more
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert {r.status for r in fleet.runs().values()} == {RunStatus.CANCELLED}


def test_a_workers_metrics_are_scraped_over_http(fleet: Fleet) -> None:
    import socket
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ids = fleet.submit(3)
    worker = fleet.worker("--metrics-port", str(port), "--metrics-host", "127.0.0.1")

    def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
                text = got.read().decode()
        except OSError:
            return {}
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def finished() -> bool:
        done = samples().get(
            (
                "orchestrion_runs_finished_total",
                frozenset({("runnable", "payer"), ("status", "completed")}),
            )
        )
        return done == 3

    fleet.wait(finished, "served 3 completed runs")
    assert fleet.all_done(ids)
    s = samples()
    assert s[("orchestrion_worker_claims_total", frozenset({("queue", "default")}))] == 3
    assert (
        s[("orchestrion_steps_total", frozenset({("kind", "tool"), ("status", "completed")}))] == 9
    )
    assert (
        s[("orchestrion_steps_total", frozenset({("kind", "model"), ("status", "completed")}))]
        == 12
    )
    assert s[("orchestrion_worker_runs_in_flight", frozenset())] == 0
    chats = frozenset(
        {
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_provider_name", "test"),
            ("gen_ai_request_model", "function"),
        }
    )
    assert s[("gen_ai_client_operation_duration_seconds_count", chats)] == 12
    assert not any(i in str(labels) for i in ids for _, labels in s)  # no run id as a label
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
