"""The redactor: what it replaces, what it must leave alone, and how it notices changes."""

from __future__ import annotations

import uuid

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrion import redact, register_secret
from orchestrion.redact import REDACTED, is_secret_name, redact_known, redact_url


def secret(prefix: str = "s") -> str:
    """A value no other test uses: registrations last for the whole process."""
    return f"{prefix}-{uuid.uuid4().hex}"


# -- URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Unknown store scheme 'postgres' in 'postgres://admin:pw@db.example.com:5432/app'",
            "Unknown store scheme 'postgres' in 'postgres://admin:<redacted>@db.example.com:5432/app'",
        ),
        ("postgresql://u:hunter2@host/db", "postgresql://u:<redacted>@host/db"),
        ("mysql://root:toor@127.0.0.1:3306", "mysql://root:<redacted>@127.0.0.1:3306"),
        ("redis://:redispw@cache:6379/0", "redis://:<redacted>@cache:6379/0"),
        ("amqp://guest:guest@rabbit//", "amqp://guest:<redacted>@rabbit//"),
        ("mongodb+srv://app:p@ss@cluster0/x", "mongodb+srv://app:<redacted>@cluster0/x"),
        (
            "at https://bot:tok3n@example.com/x, then",
            "at https://bot:<redacted>@example.com/x, then",
        ),
    ],
)
def test_the_password_of_a_url_is_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_url_also_takes_a_url_without_a_scheme() -> None:
    assert redact_url("admin:pw@db.example.com/app") == f"admin:{REDACTED}@db.example.com/app"
    assert redact_url("memory://") == "memory://"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=db user=u password=hunter2 dbname=x", "host=db user=u password=<redacted> dbname=x"),
        (
            "https://x.io/?a=1&access_token=abc123&b=2",
            "https://x.io/?a=1&access_token=<redacted>&b=2",
        ),
        ("run --password=xyz", "run --password=<redacted>"),
        ("{'password': 'p4ss', 'user': 'u'}", "{'password': '<redacted>', 'user': 'u'}"),
        ('{"api_key": "zzz"}', '{"api_key": "<redacted>"}'),
    ],
)
def test_credentials_in_key_value_pairs_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


# -- environment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret_like"),
    [
        ("OPENAI_API_KEY", True),
        ("ANTHROPIC_API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("PGPASSWORD", True),
        ("MYSQL_PWD", True),
        ("DB_PASSWD", True),
        ("AZURE_CREDENTIALS", True),
        ("BASIC_AUTH", True),
        ("SENTRY_DSN", True),
        ("PWD", False),  # the working directory
        ("OLDPWD", False),
        ("AWS_ACCESS_KEY_ID", False),  # names the key; AKIA... is caught by its shape
        ("SSH_AUTH_SOCK", False),
        ("GIT_AUTHOR_NAME", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("HOME", False),
        ("DATABASE_URL", False),  # its password is caught by the URL rule
    ],
)
def test_secret_looking_names(name: str, secret_like: bool) -> None:
    assert is_secret_name(name) is secret_like


def test_values_of_secret_named_variables_are_redacted_and_changes_are_noticed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = secret("pw"), secret("pw")
    monkeypatch.setenv("MYSQL_PWD", first)
    assert redact(f"login with {first} failed") == f"login with {REDACTED} failed"
    monkeypatch.setenv("MYSQL_PWD", second)  # the same size of environment, a new value
    assert redact_known(f"{first} {second}") == f"{first} {REDACTED}"
    monkeypatch.delenv("MYSQL_PWD")
    monkeypatch.setenv("ACME_TOKEN", first)  # one name removed, another added
    assert redact_known(f"{first} {second}") == f"{REDACTED} {second}"


def test_short_values_and_ordinary_variables_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURE_TOKEN", "1")
    monkeypatch.setenv("APP_REGION", "eu-central-9-zone")
    assert redact("1 step in eu-central-9-zone") == "1 step in eu-central-9-zone"


def test_a_password_of_a_url_in_the_environment_is_redacted_alone_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = secret("dbpw")
    monkeypatch.setenv("DATABASE_URL", f"postgres://app:{password}@db:5432/app")
    assert redact(f"auth failed for password {password}") == f"auth failed for password {REDACTED}"


# -- shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "sk-abcdefghij0123456789ABCDEFGHIJ",  # OpenAI
        "sk-proj-Abc123def456ghi789jkl012_mno345",  # OpenAI project key
        "sk-ant-api03-AbCdEf123456_ghIJKL-7890abcdefXYZ",  # Anthropic
        "sk_live_51HxYzAbCdEf0123456789",  # Stripe
        "AKIAIOSFODNN7EXAMPLE",  # AWS access key id
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",  # GitHub
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "glpat-0123456789abcdefghij",  # GitLab
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",  # Slack
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",  # Google
        "hf_abcdefghijklmnopqrstuvwxyz0123456789",  # Hugging Face
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_provider_key_shapes_are_redacted(key: str) -> None:
    assert redact(f"request failed (key {key}): 401") == f"request failed (key {REDACTED}): 401"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-123456789xyz", "Authorization: Bearer <redacted>"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic <redacted>"),
        ("{'X-Api-Key': 'k3y9999999'}", "{'X-Api-Key': '<redacted>'}"),
        ("sent bearer 0a1b2c3d4e5f6a7b8c9d", "sent bearer <redacted>"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- and more",
            "<redacted> and more",
        ),
    ],
)
def test_credentials_in_headers_and_keys_in_pem_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "skip-this",
        "sk-learn-compatible-estimator-interface",
        "task-0123456789abcdefghijklmnop",
        "See https://example.com/docs/path?q=1#frag and http://user@host:8080/x",
        "http://[::1]:8080/v1",
        "Bearer authentication is required. Authorization: required",
        "Step key 'bank/turn-1/model' was used twice; max_tokens=100 key=turn-1",
        "the token is ok; a secret of success; pwd is a command",
        "AKIA is not a key, nor is ghp_short",
        "Tool 'lookup' failed: ValueError: account 12345 has no savings",
        "a, an, 1, 42, yes, no",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


# -- registered secrets ---------------------------------------------------------------


def test_a_registered_secret_is_redacted_by_both_functions() -> None:
    value = secret("reg")
    assert redact(value) == value
    register_secret(value)
    assert redact(f"x {value} y") == f"x {REDACTED} y"
    assert redact_known(f"x {value} y") == f"x {REDACTED} y"


def test_a_registered_secret_is_redacted_inside_json_text() -> None:
    value = secret('quo"te')
    register_secret(value)
    escaped = value.replace('"', '\\"')
    assert redact_known(f'{{"token": "{escaped}"}}') == f'{{"token": "{REDACTED}"}}'


def test_register_secret_takes_secret_str_and_skips_none_and_empty() -> None:
    value = secret("pyd")
    register_secret(pydantic.SecretStr(value), None, "")
    assert redact_known(value) == REDACTED


def test_a_secret_holding_another_is_redacted_whole() -> None:
    short = secret("in")
    register_secret(short, f"{short}-and-more")
    assert redact_known(f"[{short}-and-more]") == f"[{REDACTED}]"


@pytest.mark.parametrize("value", [b"bytes-key-0123", 12345678, ["a-list-of-secrets"]])
def test_register_secret_refuses_what_is_not_text(value: object) -> None:
    with pytest.raises(TypeError, match="must be a str or a SecretStr") as info:
        register_secret(value)  # type: ignore[arg-type]
    assert str(value) not in str(info.value)  # the message never echoes the value


# -- properties ----------------------------------------------------------------------------

_WORDS = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=40)


@given(_WORDS, _WORDS)
def test_a_key_anywhere_in_text_is_redacted_and_redacting_again_changes_nothing(
    before: str, after: str
) -> None:
    key = "sk-proj-Abc123def456ghi789jkl012_mno345"
    once = redact(f"{before} {key} {after}")
    assert key not in once
    assert redact(once) == once


@pytest.mark.parametrize(
    "text",
    [
        "a." * 100_000 + "://",
        "-eyJ" * 100_000,
        "-sk-" * 100_000,
        "-xoxb-a" * 100_000,
        "glpat-" * 100_000,
        "'password': '" * 100_000,
        "authorization: " * 100_000,
    ],
    ids=["scheme", "jwt", "openai", "slack", "gitlab", "pair", "header"],
)
def test_hostile_text_is_read_in_linear_time(text: str) -> None:
    # No clock is asserted: a quadratic regex would take minutes here and hit the
    # suite's timeout, while each text is read in milliseconds.
    assert redact(text)
