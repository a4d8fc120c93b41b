"""One redactor for every text that leaves the process.

What is replaced by `<redacted>`:

- secrets registered with `register_secret(value)` or `Runtime(secrets=[...])`;
- the values of environment variables whose names look secret: a part of the
  name (split at `_`, `-`, `.`) is, or ends with, KEY, TOKEN, SECRET, PASSWORD,
  PASSWD, PWD, CREDENTIAL(S), DSN, or is AUTH (`OPENAI_API_KEY`, `MYSQL_PWD`,
  `PGPASSWORD`, `SENTRY_DSN`, `BASIC_AUTH`); not `PWD`/`OLDPWD` (the working
  directory) nor names ending in a part that names something else (`_ID`,
  `_FILE`, `_PATH`, `_URL`, ...); values shorter than 8 characters are left
  alone, as they would match ordinary text;
- the password of any URL (`postgresql://user:<redacted>@host/db`, also in a
  `DATABASE_URL`), and such a password wherever else it shows once an
  environment variable holds the URL;
- credentials in `password=...`-style pairs (DSNs, query strings) and in
  quoted `"password": "..."` pairs (dict reprs in exceptions);
- credentials by their shape: OpenAI and Anthropic keys (`sk-...`, `sk-proj-`,
  `sk-ant-`), Stripe (`sk_live_`), AWS access key ids (`AKIA...`), GitHub
  (`ghp_`, `gho_`, `github_pat_`), GitLab (`glpat-`), Slack (`xoxb-`), Google
  (`AIza...`), Hugging Face (`hf_`), `Authorization:` headers, `Bearer <token>`,
  JWTs and PEM private keys. Shapes ask for a digit where words could match
  (`sk-learn-compatible` and `Bearer authentication` stay).

Where it applies (the decision, written down):

- `redact` (everything above) applies to text derived from an error: the
  journaled `describe(exc)` with its cause chain (hence `RunRecord.error`), the
  error of the `StepFailed`, `Retrying` and `FallbackUsed` events (redacted when
  the event is built, so every sink gets it clean), a tool's `ModelRetry`
  message and other error results the model reads, the CLI's error output and
  tracebacks, and messages that echo a store URL. An error message is for people;
  a false positive there costs nothing.
- `redact_known` (registered secrets and secret environment values only) applies
  to a successful tool result before it is journaled and sent to the model. These
  values are known to be secret, so removing them cannot be a false positive;
  shapes are guesses, and a guess must not alter data a tool meant to return
  (a tool may hand the model a JWT or a URL on purpose). Live and replayed runs
  see the same redacted text, so replay stays deterministic.
- Not redacted: a run's input and output, model text, interrupt payloads and
  answers, and `ctx.step` results. They are the user's data, and replay must hand
  `ctx.step` values back exactly as the step returned them.

Registration is for the whole process: a secret one runtime knows stays out of
every runtime's journal and out of the CLI's output.

Speed: the regexes are compiled once and read each text in linear time (hostile
text included), and most texts skip them after a check for their literal parts.
The known values are rebuilt only when the environment or the registry changes
(checked by the environment's size, its newest name and the secret values: a
fraction of a microsecond). A short text without a secret costs a few microseconds,
some 20 times less than the redaction this replaced.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

__all__ = ["REDACTED", "redact", "redact_known", "register_secret"]

REDACTED = "<redacted>"
MIN_ENV_LENGTH = 8
"""Environment values shorter than this are not redacted: they match ordinary text."""


class SupportsSecret(Protocol):
    """A wrapper that hides its value, like pydantic's `SecretStr`."""

    def get_secret_value(self) -> str: ...


# -- names ---------------------------------------------------------------------

_WORDS = (
    "KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL", "CREDENTIALS", "DSN"
)  # fmt: skip
_WHOLE = frozenset((*_WORDS, "AUTH"))
_NOT_SECRET = frozenset(("PWD", "OLDPWD"))
"""The working directories: as a whole name (`MYSQL_PWD` is a password), or `OLDPWD` as a part."""
_NOT_SECRET_LAST = frozenset(
    ("ID", "NAME", "FILE", "PATH", "DIR", "SOCK", "SOCKET", "HOST", "PORT", "USER",
     "USERNAME", "URL", "TYPE", "REGION", "ENABLED", "TIMEOUT")
)  # fmt: skip
"""A last part naming what the variable holds, which is not the secret itself
(`AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS_FILE`, `SSH_AUTH_SOCK`)."""
_PARTS = re.compile(r"[_.\-]+")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    upper = name.upper()
    if upper in _NOT_SECRET:
        return False
    parts = [p for p in _PARTS.split(upper) if p]
    if len(parts) > 1 and parts[-1] in _NOT_SECRET_LAST:
        return False
    return any(p != "OLDPWD" and (p in _WHOLE or p.endswith(_WORDS)) for p in parts)


# -- shapes --------------------------------------------------------------------

_KEEP_HEAD = r"\g<head>" + REDACTED
"""The replacement of rules that keep what names the secret (`password=`, `Bearer `)."""
_KV_NAMES = (
    r"password|passwd|pwd|secret|client_secret|api_key|apikey|access_token|refresh_token"
    r"|auth_token|token|x-amz-signature|x-amz-security-token|sig"
)
_KV_TRIGGERS = ("pass", "pwd", "secret", "api", "token", "sig")
"""Lowercase parts of `_KV_NAMES`, one of which each holds."""
_TOKEN = r"[^\s\"',;}<>]"  # a character of a credential in a header
_CHARS = r"A-Za-z0-9._~+/=\-"  # of an opaque token (base64 and url-safe base64)
_HEADER = r"\b(?:proxy-)?(?:authorization|x-api-key|api-key|x-auth-token)[\"']?\s*[:=]\s*[\"']?"

_START = r"(?<![A-Za-z0-9_\-])"
"""Where a token whose characters include `-` may start: not inside a run of them, so
each run is read once (`\\b` would let every `-` start a new scan: quadratic time)."""
_URL_PASSWORD = re.compile(
    # scheme://user:password@host; the password runs to the last `@` of the authority.
    r"(?P<head>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"<>]*:)"
    r"(?P<secret>[^\s/?#'\"<>]+)(?=@)"
)


class _Rule(NamedTuple):
    triggers: tuple[str, ...]
    """Lowercase text one of which a match contains: checked first, so that most
    texts skip most regexes."""
    pattern: re.Pattern[str]
    replacement: str


_RULES = (
    _Rule(
        ("-----begin",),
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)", re.S
        ),
        REDACTED,
    ),
    _Rule(("://",), _URL_PASSWORD, _KEEP_HEAD),
    _Rule(
        _KV_TRIGGERS,
        re.compile(rf"(?P<head>(?<!\w)(?:{_KV_NAMES})\s*=\s*)[^\s&;,'\"<>]+", re.I),
        _KEEP_HEAD,
    ),
    _Rule(
        _KV_TRIGGERS,
        re.compile(rf"(?P<head>[\"'](?:{_KV_NAMES})[\"']\s*:\s*[\"'])[^\"'<>]+(?=[\"'])", re.I),
        _KEEP_HEAD,
    ),
    _Rule(
        ("authorization", "api-key", "auth-token"),
        # After a scheme word any credential; without one, only a token with a digit.
        re.compile(rf"(?P<head>{_HEADER}(?:basic|bearer|token|digest)\s+){_TOKEN}{{6,}}", re.I),
        _KEEP_HEAD,
    ),
    _Rule(
        ("authorization", "api-key", "auth-token"),
        re.compile(rf"(?P<head>{_HEADER})(?={_TOKEN}*\d){_TOKEN}{{6,}}", re.I),
        _KEEP_HEAD,
    ),
    _Rule(
        ("bearer",),
        re.compile(rf"(?P<head>\bbearer\s+)(?=[{_CHARS}]*\d)[{_CHARS}]{{12,}}", re.I),
        _KEEP_HEAD,
    ),
    _Rule(
        ("eyj",),
        re.compile(rf"{_START}eyJ[A-Za-z0-9_\-]{{5,}}\.eyJ[A-Za-z0-9_\-]{{5,}}\.[A-Za-z0-9_\-]*"),
        REDACTED,
    ),
    _Rule(
        ("sk-", "sk_", "rk_"),
        re.compile(
            rf"{_START}sk-(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{{20,}}"
            r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
        ),
        REDACTED,
    ),
    _Rule(("akia", "asia"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    _Rule(
        ("gh", "github_pat_", "glpat-"),
        re.compile(
            r"\bgh[pousr]_[A-Za-z0-9]{36,}|\bgithub_pat_[A-Za-z0-9_]{22,}"
            rf"|{_START}glpat-[A-Za-z0-9_\-]{{20,}}"
        ),
        REDACTED,
    ),
    _Rule(
        ("xox", "xapp-"),
        re.compile(rf"{_START}(?:xox[abposre]|xapp)-[A-Za-z0-9\-]{{10,}}"),
        REDACTED,
    ),
    _Rule(("aiza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), REDACTED),
    _Rule(("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{30,}"), REDACTED),
)
_TRIGGERS = tuple(sorted({t for rule in _RULES for t in rule.triggers}))


# -- known values ----------------------------------------------------------------

_lock = threading.Lock()
_registered: dict[str, None] = {}
"""Registered secrets, in order (a dict as an ordered set). Replaced, never changed in
place, so a reader in another thread iterates a consistent one."""
_generation = 0
"""Bumped on every registration: the known values are rebuilt after one."""


class _Known:
    """The known secret values, and what the environment looked like when they were found."""

    __slots__ = ("generation", "last", "size", "values", "watched")

    def __init__(self) -> None:
        self.generation = -1
        self.size = -1
        self.last: object = None
        self.watched: tuple[tuple[object, object], ...] = ()
        """(raw key, raw value) of each secret-named variable, to notice a new value."""
        self.values: tuple[str, ...] = ()
        """Longest first, so a secret holding another is replaced whole."""


_known = _Known()


def _environ() -> tuple[dict[Any, Any], Callable[[Any], str], Callable[[Any], str]]:
    """The environment's raw dict, and how to decode its keys and values."""
    # os.environ's own dict: reading it is ~10x faster than os.environ.get, which
    # encodes the key and decodes the value each time; a copy where there is none.
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return data, os.environ.decodekey, os.environ.decodevalue
    return dict(os.environ), str, str


def _fresh(known: _Known, raw: dict[Any, Any]) -> bool:
    """Whether `known` still describes the environment and the registry."""
    if known.generation != _generation or len(raw) != known.size:
        return False
    if raw and next(reversed(raw)) != known.last:  # a name removed and another added
        return False
    return all(raw.get(k) == v for k, v in known.watched)


def _known_values() -> tuple[str, ...]:
    global _known
    raw, decode_key, decode_value = _environ()
    known = _known
    if _fresh(known, raw):
        return known.values
    fresh = _Known()
    fresh.generation = _generation
    fresh.size = len(raw)
    fresh.last = next(reversed(raw)) if raw else None
    values: dict[str, None] = dict.fromkeys(_registered)
    watched = []
    for raw_key, raw_value in list(raw.items()):
        value = decode_value(raw_value)
        if is_secret_name(decode_key(raw_key)):
            watched.append((raw_key, raw_value))
            if len(value) >= MIN_ENV_LENGTH:
                values[value] = None
        if "://" in value:  # a URL's password is a secret wherever it shows, alone too
            for m in _URL_PASSWORD.finditer(value):
                if len(m.group("secret")) >= MIN_ENV_LENGTH:
                    values[m.group("secret")] = None
    for value in list(values):  # as it shows inside JSON text (a tool's result)
        escaped = _json_escaped(value)
        if escaped != value:
            values[escaped] = None
    fresh.watched = tuple(watched)
    fresh.values = tuple(sorted(values, key=len, reverse=True))
    _known = fresh
    return fresh.values


def _json_escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


# -- the public functions ----------------------------------------------------------


def register_secret(*values: str | SupportsSecret | None) -> None:
    """Redact each value wherever orchestrion lets text out of the process (see the
    module docstring), for the rest of the process's life. Accepts `str` and
    pydantic's `SecretStr`; `None` and `""` are skipped, so
    `register_secret(os.environ.get("API_KEY"))` works when the variable is unset."""
    global _generation, _registered
    found = []
    for value in values:
        getter = getattr(value, "get_secret_value", None)
        if callable(getter):
            value = getter()
        if value is None or value == "":
            continue
        if not isinstance(value, str):  # its type only: the value may be a secret
            several = isinstance(value, list | tuple | set)
            raise TypeError(
                f"A secret to redact must be a str or a SecretStr, not a {type(value).__name__}"
                + (": give each as its own argument, register_secret(*values)." if several else ".")
            )
        found.append(value)
    if found:
        with _lock:
            _registered = {**_registered, **dict.fromkeys(found)}
            _generation += 1


def redact_known(text: str) -> str:
    """`text` without registered secrets and secret environment values."""
    for value in _known_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """`text` without secrets: known values, URL passwords, credentials by shape."""
    text = redact_known(text)
    lower = text.lower()
    if not any(t in lower for t in _TRIGGERS):
        return text
    for rule in _RULES:
        if any(t in lower for t in rule.triggers):
            text = rule.pattern.sub(rule.replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL without its password, scheme or not (`user:pw@host` too): for messages
    about a URL that is known to be one."""
    text = redact(url)
    head, at, host = text.rpartition("@")
    if at and ":" in head and "://" not in head and REDACTED not in head:
        user = head.split(":", 1)[0]
        return f"{user}:{REDACTED}@{host}"
    return text
