"""What the provider adapters share: client lifecycle, retry hints and transience."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

from orchestrion.policy import retry_after_header as retry_after


class _Closable(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Closable)


class OwnsClient(Generic[ClientT]):
    """An SDK client created lazily by the model; closed only if the model created it."""

    _client: ClientT | None
    _owns_client: bool

    async def aclose(self) -> None:
        """Close the HTTP client if this model created it; a later request reopens one."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def transient(status: int, headers: Mapping[str, str]) -> bool:
    """The SDK's own retry rule: the server's `x-should-retry`, else 408/409/429/5xx."""
    should_retry = headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return status in (408, 409, 429) or status >= 500


def status_error(
    model: str, status: int, headers: Mapping[str, str], detail: str, key_variable: str
) -> tuple[str, float | None, bool]:
    """(message, retry_after, transient) for an HTTP error answer from a provider."""
    wait = retry_after(headers)
    message = f"Model {model!r} failed with HTTP {status}: {detail.rstrip('.')}."
    if status == 429 and wait is not None:
        message += f" The provider asks to retry after {wait:g}s."
    elif status in (401, 403):
        message += f" Check the API key ({key_variable}, or api_key=...)."
    return message, wait, transient(status, headers)


def redact(text: str, keys: Iterable[str | None]) -> str:
    """Keep API keys out of messages, which end up in journals and logs."""
    for key in keys:
        if key and len(key) >= 8:
            text = text.replace(key, "<redacted>")
    return text
