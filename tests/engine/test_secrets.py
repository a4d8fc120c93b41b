"""Secrets never leave the process: not in the journal, a run's record, events, or
what a model reads, whichever path an error (or a registered secret) takes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from orchestrion import (
    Agent,
    Event,
    FallbackUsed,
    ModelRequest,
    ModelRetry,
    Policy,
    Retry,
    Retrying,
    RunStatus,
    Runtime,
    StepFailed,
    UserError,
    tool,
    with_policy,
)
from orchestrion.engine.store import Store, open_store
from orchestrion.errors import describe
from orchestrion.testing import FunctionModel, ScriptedModel, call
from tests.engine._support import last_tool_result

FAST = Retry(attempts=2, initial=0.001, jitter=0)
REDACTED = "<redacted>"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe_dc-BA"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def everything_kept(runtime: Runtime, run_id: str) -> str:
    """The run's journal, record and history as text: what the store keeps of it."""
    entries = await runtime.store.load(run_id)
    record = await runtime.get(run_id)
    history = await runtime.history(run_id)
    return repr((entries, record.to_json(), [s.to_json() for s in history]))


def what_models_read(*models: FunctionModel | ScriptedModel) -> str:
    return repr([r.messages for m in models for r in m.requests])


async def test_retrying_and_step_failed_events_of_a_tool_carry_no_api_key(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = unique("acme-live")
    monkeypatch.setenv("ACME_API_KEY", key)

    @tool(policy=Policy(retry=FAST))
    def charge(amount: int) -> str:
        """Charge a card."""
        raise ConnectionError(f"POST https://api.acme.test/charge with key {key}: reset")

    events: list[Event] = []
    model = ScriptedModel([call("charge", {"amount": 5}, id="c1")])
    runtime = Runtime(store, sinks=[events.append])
    result = await runtime.run(Agent(name="cashier", model=model, tools=[charge]), "charge 5")

    assert result.status is RunStatus.FAILED
    retrying = [e for e in events if isinstance(e, Retrying)]
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert retrying and failed
    for event in (*retrying, *failed):
        assert key not in event.error and REDACTED in event.error
    assert key not in repr(events)
    assert key not in await everything_kept(runtime, result.run_id)


async def test_model_retries_and_fallbacks_carry_no_api_key(store: Store) -> None:
    def leaky(request: ModelRequest) -> str:
        raise ConnectionError(f"connection to api.anthropic.com lost (x-api-key: {ANTHROPIC_KEY})")

    primary = FunctionModel(leaky, name="primary")
    backup = FunctionModel(lambda request: "from the backup", name="backup")
    model = with_policy(primary, Policy(retry=FAST, fallback=[backup]))
    events: list[Event] = []
    runtime = Runtime(store, sinks=[events.append])
    result = await runtime.run(Agent(name="writer", model=model), "write")

    assert result.output == "from the backup"
    [retrying] = [e for e in events if isinstance(e, Retrying)]
    [fallback] = [e for e in events if isinstance(e, FallbackUsed)]
    for event in (retrying, fallback):
        assert ANTHROPIC_KEY not in event.error and REDACTED in event.error
    assert ANTHROPIC_KEY not in await everything_kept(runtime, result.run_id)


async def test_a_model_retry_message_with_a_key_is_neither_journaled_nor_sent_to_the_model(
    runtime: Runtime,
) -> None:
    @tool
    def lookup(account: str) -> str:
        """Look an account up."""
        raise ModelRetry(f"Key {ANTHROPIC_KEY} has no access to {account}; try another account.")

    def decide(request: ModelRequest) -> Any:
        if len(request.messages) == 1:
            return call("lookup", {"account": "savings"}, id="l1")
        return "I could not look it up."

    model = FunctionModel(decide)
    result = await runtime.run(Agent(name="clerk", model=model, tools=[lookup]), "balance?")

    assert result.status is RunStatus.COMPLETED
    seen = last_tool_result(model.requests[-1])
    assert seen.is_error and seen.content.startswith(f"Key {REDACTED} has no access to savings")
    assert ANTHROPIC_KEY not in what_models_read(model)
    assert ANTHROPIC_KEY not in await everything_kept(runtime, result.run_id)


async def test_database_url_and_mysql_pwd_are_not_journaled(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_password, mysql_password = unique("pg"), unique("my")
    database_url = f"postgres://app:{db_password}@db.internal:5432/app"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MYSQL_PWD", mysql_password)

    class OperationalError(Exception):
        pass

    @tool
    def report() -> str:
        """Build the report."""
        try:
            raise OperationalError(f"could not connect to {database_url}")
        except OperationalError as exc:
            raise RuntimeError(f"mysql fallback refused password {mysql_password}") from exc

    model = ScriptedModel([call("report", {}, id="r1")])
    result = await runtime.run(Agent(name="reporter", model=model, tools=[report]), "report")

    assert result.status is RunStatus.FAILED
    assert result.error is not None
    kept = await everything_kept(runtime, result.run_id) + repr(result.error)
    assert db_password not in kept and mysql_password not in kept
    assert "postgres://app:<redacted>@db.internal:5432/app" in kept  # still says where


def test_describe_redacts_the_cause_chain() -> None:
    password = unique("chain")
    try:
        try:
            raise OSError(f"dial redis://:{password}@cache:6379 failed")
        except OSError as inner:
            raise ValueError("cache unavailable") from inner
    except ValueError as exc:
        from orchestrion import ToolError

        error = ToolError("Tool 'cache' raised: ValueError: cache unavailable")
        error.__cause__ = exc
        described = describe(error)
    assert password not in repr(described)
    assert described["cause_chain"][1]["message"] == f"dial redis://:{REDACTED}@cache:6379 failed"


async def test_a_registered_secret_stays_out_of_journal_events_and_model_messages(
    store: Store,
) -> None:
    vault = unique("vault")  # no secret-looking name, no known shape: only registration finds it

    @tool
    def fetch_credentials() -> str:
        """Fetch the credentials."""
        return f"credentials: {vault}"

    @tool
    def connect() -> str:
        """Connect."""
        raise RuntimeError(f"handshake refused for {vault}")

    def decide(request: ModelRequest) -> Any:
        if len(request.messages) == 1:
            return call("fetch_credentials", {}, id="f1")
        return call("connect", {}, id="c1")

    events: list[Event] = []
    model = FunctionModel(decide)
    runtime = Runtime(store, sinks=[events.append], secrets=[vault])
    result = await runtime.run(
        Agent(name="agent", model=model, tools=[fetch_credentials, connect]), "connect"
    )

    assert result.status is RunStatus.FAILED
    assert last_tool_result(model.requests[-1]).content == f"credentials: {REDACTED}"
    assert any(isinstance(e, StepFailed) for e in events)
    assert vault not in repr(events)
    assert vault not in what_models_read(model)
    assert vault not in await everything_kept(runtime, result.run_id)
    assert vault not in repr(result.error)


async def test_a_successful_tool_result_keeps_shapes_but_loses_known_secrets(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = unique("svc")
    monkeypatch.setenv("BILLING_SERVICE_TOKEN", token)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"

    @tool
    def session() -> str:
        """Open a session."""
        return f"session {jwt} opened with {token}"

    model = ScriptedModel([call("session", {}, id="s1"), "ok"])
    result = await runtime.run(Agent(name="a", model=model, tools=[session]), "go")

    assert result.status is RunStatus.COMPLETED
    content = last_tool_result(model.requests[-1]).content
    assert content == f"session {jwt} opened with {REDACTED}"  # the JWT is the tool's data
    assert token not in await everything_kept(runtime, result.run_id)


def test_an_unknown_store_scheme_does_not_echo_the_password() -> None:
    password = unique("pgpw")
    with pytest.raises(UserError) as info:
        Runtime(f"mysql://admin:{password}@db.example.com/app")
    assert password not in str(info.value)
    assert f"mysql://admin:{REDACTED}@db.example.com/app" in str(info.value)
    with pytest.raises(UserError) as info:
        open_store(f"sqlite://admin:{password}@host/runs.db")
    assert password not in str(info.value)
    with pytest.raises(UserError) as info:
        open_store(f"admin:{password}@db.example.com/app")
    assert password not in str(info.value)


@pytest.mark.parametrize("secrets", ["one-secret-string", [42]])
def test_runtime_secrets_must_be_a_list_of_strings(secrets: Any) -> None:
    with pytest.raises(UserError, match=r"Runtime\(secrets=\.\.\.\)"):
        Runtime("memory://", secrets=secrets)


def test_an_openai_compatible_model_name_holds_no_password() -> None:
    from orchestrion.models.openai import OpenAIModel

    password = unique("proxy")
    model = OpenAIModel(
        "llama3.2", base_url=f"http://u:{password}@proxy:8080/v1", provider="openai-compatible"
    )
    assert model.name == f"openai-compatible:http://u:{REDACTED}@proxy:8080/v1#llama3.2"
