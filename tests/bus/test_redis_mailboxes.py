"""`PeerNetwork(mailboxes=RedisMailboxes(...))` on the local Redis, with workers in
this process: each agent is its own queued run, mail goes through Redis Streams,
and the network ends with a finish, when the mail runs out, past max_rounds, or
when an agent fails. The mailboxes' calls are checked one by one for what a
crash makes them repeat. (Worker processes killed mid-network: tests/test_peer_workers.py.)"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrion import PeerNetwork, RunStatus, Runtime, UserError
from orchestrion.bus.redis_mail import RedisMailboxes, networks
from orchestrion.engine.journal import RunRecord
from orchestrion.engine.targets import load_target, member_target
from orchestrion.engine.worker import Worker
from orchestrion.errors import TargetError
from tests.workers import peers

TARGET = str(Path(__file__).parents[1] / "workers" / "peers.py")
REDIS_URL = peers.REDIS_URL


@pytest.fixture(autouse=True)
async def close_mailboxes() -> AsyncIterator[None]:
    yield
    for network in (peers.ping_pong, load_target(f"{TARGET}:ping_pong")):  # as imported, as loaded
        assert isinstance(network, PeerNetwork) and network.mailboxes is not None
        await network.mailboxes.aclose()  # their clients of this test's event loop


async def work(runtime: Runtime, run_id: str, timeout: float = 20) -> RunRecord:
    """Work on the queue here until run `run_id` stops working."""
    worker = Worker(runtime, concurrency=4, poll=0.05)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while (await runtime.get(run_id)).status in (RunStatus.QUEUED, RunStatus.RUNNING):
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    return await runtime.get(run_id)


def ping_pong_mail(rounds: int) -> list[dict[str, str]]:
    mail = [{"from": "user", "to": "alice", "content": f"start {rounds}"}]
    for k in range(1, rounds + 1):
        mail.append({"from": "alice", "to": "bob", "content": f"ping {k} of {rounds}"})
        mail.append({"from": "bob", "to": "alice", "content": f"pong {k} of {rounds}"})
    return mail


async def network_of(run_id: str) -> dict[str, object]:
    [found] = [n for n in await networks(REDIS_URL, peers.PREFIX) if n["run_id"] == run_id]
    return found


async def test_each_agent_runs_as_its_own_run_and_the_network_ends_with_the_finish() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 3")
        record = await work(runtime, run_id)
        assert record.status is RunStatus.COMPLETED, record.error
        assert record.output == "done after 3"
        runs = {r.name: r for r in await runtime.list()}
        assert set(runs) == {"ping-pong", "ping-pong.alice", "ping-pong.bob"}
        for agent in ("alice", "bob"):
            peer = runs[f"ping-pong.{agent}"]
            assert peer.status is RunStatus.COMPLETED
            assert peer.target == f"{TARGET}:ping_pong#ping-pong.{agent}"
            assert (peer.queue, peer.priority) == ("default", 1)  # before new work
        assert runs["ping-pong.bob"].output == {"turns": 3}
        # Each agent read its mail in journaled steps, then acted on it in a turn.
        history = [s.key for s in await runtime.history(runs["ping-pong.bob"].id)]
        assert [k for k in history if "inbox" in k] == [
            f"ping-pong.bob/inbox-{i}" for i in range(1, 5)
        ]

    network = await network_of(run_id)
    assert network["outcome"] == "finish" and network["in_flight"] == 0
    messages = await peers.MAILBOXES.messages(str(network["box"]))
    assert messages == ping_pong_mail(3)  # every message posted once, in order


async def test_a_network_whose_mail_runs_out_ends_with_every_message() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:chatter", "start 2")
        record = await work(runtime, run_id)
    assert record.status is RunStatus.COMPLETED, record.error
    assert record.output == {"messages": ping_pong_mail(2), "finished": None}
    assert (await network_of(run_id))["outcome"] == "quiet"


async def test_an_agent_past_max_rounds_fails_the_network() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:short", "start 5")
        record = await work(runtime, run_id)
        assert record.status is RunStatus.FAILED
        assert record.error is not None and record.error["type"] == "RoundsExceeded"
        assert "max_rounds" in record.error["message"]
        # Every agent was stopped: no run is left waiting for mail.
        assert {r.status for r in await runtime.list()} == {
            RunStatus.FAILED,
            RunStatus.COMPLETED,
        }


async def test_an_agent_that_fails_fails_the_network_with_its_error() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:broken", "start 1")
        record = await work(runtime, run_id)
        assert record.status is RunStatus.FAILED
        assert record.error is not None and record.error["type"] == "PeerFailed"
        message = record.error["message"]
        assert "agent bob" in message and "ModelError" in message and "gone" in message
        bob = next(r for r in await runtime.list() if r.name == "broken.bob")
        assert bob.status is RunStatus.FAILED and bob.id in message


async def test_a_network_inside_another_pattern_finds_its_agents_through_it() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:pipeline", "start 1")
        record = await work(runtime, run_id)
        assert record.status is RunStatus.COMPLETED, record.error
        assert record.output == "done after 1"
        targets = sorted(r.target or "" for r in await runtime.list())
        assert f"{TARGET}:pipeline#ping-pong#ping-pong.alice" in targets
    network = load_target(f"{TARGET}:ping_pong")
    assert isinstance(network, PeerNetwork)
    assert load_target(f"{TARGET}:pipeline#ping-pong#ping-pong.bob") is network._peers["bob"]


async def test_a_network_with_mailboxes_run_outside_a_queue_says_to_submit_it() -> None:
    async with Runtime("memory://") as runtime:
        with pytest.raises(UserError, match="not submitted to a queue: submit it"):
            await runtime.run(peers.ping_pong, "start 1")


def test_member_targets_name_a_path_that_finds_the_same_member() -> None:
    root = peers.pipeline
    alice = peers.ping_pong._peers["alice"]
    target = member_target("t.py:pipeline", root, alice)
    assert target == "t.py:pipeline#ping-pong#ping-pong.alice"
    with pytest.raises(TargetError, match="is not a member of"):
        member_target("t.py:pipeline", root, peers.chatter._peers["alice"])
    with pytest.raises(TargetError, match="has no member 'nobody'"):
        load_target(f"{TARGET}:pipeline#ping-pong#nobody")
    twins = PeerNetwork(name="twins", agents=[peers.ping_pong.agents[0]], mailboxes=peers.MAILBOXES)
    from orchestrion import Sequential

    doubled = Sequential(name="doubled", members=[peers.ping_pong, twins])
    same_name = PeerNetwork(
        name="ping-pong", agents=[peers.ping_pong.agents[1]], mailboxes=peers.MAILBOXES
    )
    ambiguous = Sequential(name="ambiguous", members=[peers.ping_pong, same_name])
    assert member_target("t.py:d", doubled, twins._peers["alice"]).endswith("#twins#twins.alice")
    with pytest.raises(TargetError, match="two different members"):
        member_target("t.py:a", ambiguous, same_name._peers["bob"])


# -- the mailboxes' calls, repeated as a crash repeats them ---------------------------


@pytest.fixture
async def mail() -> AsyncIterator[tuple[RedisMailboxes, str]]:
    boxes = RedisMailboxes(REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:8]}", block=0.05, ttl=60)
    box = uuid.uuid4().hex
    await boxes.open(box, "net", "run-1", ["a", "b"])
    yield boxes, box
    await boxes.close(box, ["a", "b"])
    await boxes.aclose()


async def test_mail_posted_twice_under_one_id_is_delivered_once(
    mail: tuple[RedisMailboxes, str],
) -> None:
    boxes, box = mail
    await boxes.post(box, "m1", "a", "b", "hello")
    await boxes.post(box, "m1", "a", "b", "hello")  # the send replayed after a crash
    taken = await boxes.receive(box, "b", "reader-b")
    assert [(m["id"], m["from"], m["content"]) for m in taken] == [("m1", "a", "hello")]  # type: ignore[index,call-overload]
    assert await boxes.messages(box) == [{"from": "a", "to": "b", "content": "hello"}]


async def test_mail_taken_and_not_acknowledged_is_given_again_to_its_reader_first(
    mail: tuple[RedisMailboxes, str],
) -> None:
    boxes, box = mail
    await boxes.post(box, "m1", "a", "b", "one")
    first = await boxes.receive(box, "b", "reader-b")  # the reader dies before journaling it
    await boxes.post(box, "m2", "a", "b", "two")
    again = await boxes.receive(box, "b", "reader-b")  # resumed: the same mail, first
    assert again == first
    await boxes.ack(box, "b", [str(m["entry"]) for m in again])  # type: ignore[index,call-overload]
    [second] = await boxes.receive(box, "b", "reader-b")
    assert second["content"] == "two"  # type: ignore[index,call-overload]


async def test_mail_acted_on_twice_counts_once_and_quiet_is_reported_once(
    mail: tuple[RedisMailboxes, str],
) -> None:
    boxes, box = mail
    await boxes.post(box, "m1", "user", "a", "go")
    await boxes.post(box, "m2", "a", "b", "relay")
    await boxes.done(box, ["m1"])
    await boxes.done(box, ["m1"])  # a turn replayed after a crash
    [net] = [n for n in await networks(REDIS_URL, boxes.prefix) if n["box"] == box]
    assert net["in_flight"] == 1 and net["outcome"] is None
    await boxes.done(box, ["m2"])
    await boxes.done(box, ["m2"])
    outcome = await boxes.outcome(box)
    assert outcome["type"] == "quiet" and len(outcome["messages"]) == 2  # type: ignore[arg-type]
    await boxes.report(box, "r1", {"type": "finish", "answer": "late"})
    assert (await boxes.outcome(box))["type"] == "quiet"  # the first report stands


async def test_a_closed_network_stops_its_agents_and_a_gone_one_too(
    mail: tuple[RedisMailboxes, str],
) -> None:
    boxes, box = mail
    await boxes.close(box, ["a", "b"])
    await boxes.close(box, ["a", "b"])  # closed again by a replay: one stop each
    [stop] = await boxes.receive(box, "a", "reader-a")
    assert stop["stop"] == "1"  # type: ignore[index,call-overload]
    gone = await boxes.receive(uuid.uuid4().hex, "a", "reader-a")  # expired, or never made
    assert gone == [{"entry": "0-0", "stop": "1"}]


async def test_orchestrion_bus_lists_the_networks_and_their_mailboxes() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 1")
        await work(runtime, run_id)
    command = ("-m", "orchestrion", "bus", "--bus", REDIS_URL, "--prefix", peers.PREFIX)
    listed = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--json", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await listed.communicate()
    assert listed.returncode == 0
    found = json.loads(out)
    [net] = [n for n in found["networks"] if n["run_id"] == run_id]
    assert net["network"] == "ping-pong" and net["agents"] == ["alice", "bob"]
    assert net["posted"] == 3 and net["in_flight"] == 0 and net["outcome"] == "finish"
    streams = {s["stream"]: s for s in found["streams"]}
    inbox = streams[f"{peers.PREFIX}:mail:{{{net['box']}}}:in:bob"]
    [group] = inbox["groups"]
    assert group["name"] == "agents" and group["pending"] == 0 and group["lag"] == 0


async def test_a_stopping_worker_lets_go_of_agents_waiting_for_mail_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = tmp_path / "effects.jsonl"
    monkeypatch.setenv("WK_EFFECTS", str(effects))
    monkeypatch.setenv("WK_SLEEP", "0.3")  # bob's turns; alice and the network wait meanwhile
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 3")
        worker = Worker(runtime, concurrency=4, poll=0.05, grace=120)
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(20):
            while not effects.exists() or '"bob"' not in effects.read_text():
                await asyncio.sleep(0.01)
            worker.stop()
            await task  # long before the grace period: only bob's model call is let finish
        runs = await runtime.list()
        assert {r.status for r in runs} == {RunStatus.QUEUED}  # all back on the queue
        assert all(r.lease is None for r in runs)

        record = await work(runtime, run_id)  # another worker takes them all up
    assert record.status is RunStatus.COMPLETED and record.output == "done after 3"
    network = await network_of(run_id)
    assert await peers.MAILBOXES.messages(str(network["box"])) == ping_pong_mail(3)


async def test_a_fork_after_the_agents_were_queued_is_refused() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 1")
        await work(runtime, run_id)
        steps = [s.key for s in await runtime.history(run_id)]
        assert steps[:4] == [
            "ping-pong/mailboxes",
            "ping-pong/submit-alice",
            "ping-pong/submit-bob",
            "ping-pong/deliver",
        ]
        with pytest.raises(UserError, match="a fork would share them"):
            await runtime.fork(run_id, at="ping-pong/outcome")
        with pytest.raises(UserError, match="not submitted to a queue"):  # a fork works here
            await runtime.fork(run_id, at="ping-pong/submit-alice")


@pytest.mark.parametrize("where", ["here", "elsewhere"])
async def test_cancelling_the_network_cancels_its_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from orchestrion.stores.memory import MemoryStore

    effects = tmp_path / "effects.jsonl"
    monkeypatch.setenv("WK_EFFECTS", str(effects))
    monkeypatch.setenv("WK_SLEEP", "0.2")
    store = MemoryStore()
    working = Runtime(store, lease_ttl=0.6)  # the worker's; its heartbeat every 0.2 s
    other = Runtime(store) if where == "elsewhere" else working
    run_id = await working.submit(f"{TARGET}:ping_pong", "start 50")
    worker = Worker(working, concurrency=4, poll=0.05)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(20):
        while not effects.exists() or '"bob"' not in effects.read_text():
            await asyncio.sleep(0.01)
        await other.cancel(run_id)
        runs = await other.list()
        assert {r.name: r.status for r in runs} == {
            "ping-pong": RunStatus.CANCELLED,
            "ping-pong.alice": RunStatus.CANCELLED,
            "ping-pong.bob": RunStatus.CANCELLED,
        }
        while worker.active:  # the worker lets go of them all: nothing waits forever
            await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert {r.status for r in await other.list()} == {RunStatus.CANCELLED}


async def test_a_worker_with_one_slot_runs_a_network_by_putting_waiting_runs_back() -> None:
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 2")
        worker = Worker(runtime, concurrency=1, poll=0.05)  # a network needs three slots
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(30):
                while (await runtime.get(run_id)).status is not RunStatus.COMPLETED:
                    await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
        assert (await runtime.get(run_id)).output == "done after 2"
        runs = await runtime.list()
        assert {r.status for r in runs} == {RunStatus.COMPLETED}
        assert max(r.token for r in runs) > 1  # some were put back and taken again
    network = await network_of(run_id)
    assert await peers.MAILBOXES.messages(str(network["box"])) == ping_pong_mail(2)


async def test_a_network_whose_agents_never_read_their_mail_says_so(
    mail: tuple[RedisMailboxes, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from orchestrion.bus import redis_mail

    monkeypatch.setattr(redis_mail, "UNREAD_AFTER", 0.1)
    boxes, box = mail
    waiting = asyncio.create_task(boxes.outcome(box))
    async with asyncio.timeout(10):
        while "have not read their mailboxes" not in caplog.text:
            await asyncio.sleep(0.02)
    await boxes.report(box, "r1", {"type": "finish", "answer": "late"})
    assert (await waiting)["type"] == "finish"
    assert "agents ['a', 'b']" in caplog.text and "raise --concurrency" in caplog.text


async def test_a_network_goes_on_when_redis_drops_every_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio

    effects = tmp_path / "effects.jsonl"
    monkeypatch.setenv("WK_EFFECTS", str(effects))
    monkeypatch.setenv("WK_SLEEP", "0.05")
    killer = redis.asyncio.Redis.from_url(REDIS_URL)
    async with Runtime("memory://") as runtime:
        run_id = await runtime.submit(f"{TARGET}:ping_pong", "start 6")
        worker = Worker(runtime, concurrency=4, poll=0.05)
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(60):
                while not effects.exists() or '"bob"' not in effects.read_text():
                    await asyncio.sleep(0.01)
                killed = 0
                for _ in range(5):  # mid-conversation, every client but this one, again and again
                    killed += await killer.client_kill_filter(_type="normal", skipme=True)
                    await asyncio.sleep(0.1)
                assert killed >= 5  # the network's and its agents' connections, each time
                while (await runtime.get(run_id)).status is RunStatus.RUNNING:
                    await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
            await killer.aclose()
        record = await runtime.get(run_id)
    assert record.status is RunStatus.COMPLETED, record.error
    assert record.output == "done after 6"
    network = await network_of(run_id)
    assert network["in_flight"] == 0
    assert await peers.MAILBOXES.messages(str(network["box"])) == ping_pong_mail(6)
