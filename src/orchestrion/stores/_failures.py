"""`WriteFailure`: a write of a run that failed, kept for the run, in the stores
that commit writes for their callers (SQLite's writer thread, PostgreSQL's writer
task); and the error a store's `close` raises for the failures nobody heard of."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrion.errors import LeaseLost, StoreError


class WriteFailure:
    """Why a write of a run failed. Until a load of the run after the error was
    raised, the run's later writes are refused, so that its journal stays a prefix."""

    __slots__ = ("cause", "kind", "message", "reported", "token")

    def __init__(
        self,
        message: str,
        cause: BaseException | None,
        kind: type[StoreError] = StoreError,
        token: int | None = None,
    ) -> None:
        self.message = message
        self.cause = cause
        self.kind = kind
        """The class of the error raised (`LeaseLost` for a refused token)."""
        self.token = token
        """For `LeaseLost`: the stale token refused."""
        self.reported = False
        """Set once the error was raised to a caller (in that caller's thread)."""

    def refuses(self, token: int | None) -> bool:
        """Whether a write of the run carrying `token` is refused for this failure. A
        stale token's refusal concerns only its old owner: the run's new owner (another
        runtime on this store) writes on."""
        return token == self.token or not issubclass(self.kind, LeaseLost)

    def error(self) -> StoreError:
        error = self.kind(self.message)
        error.__cause__ = self.cause
        return error

    @classmethod
    def of(cls, error: StoreError, token: int | None = None) -> WriteFailure:
        """The failure `error` is; `token`: the stale token a `LeaseLost` refused."""
        return cls(str(error), error.__cause__, type(error), token)


def lost_writes(unreported: Sequence[tuple[str, WriteFailure]]) -> StoreError | None:
    """What a store's `close` raises for the failures of runs that never heard of
    them (a stale token's refusal is none: nothing of the run is lost), if any."""
    unreported = [(r, f) for r, f in unreported if not issubclass(f.kind, LeaseLost)]
    if len(unreported) == 1:
        return unreported[0][1].error()
    if not unreported:
        return None
    ids = ", ".join(repr(run_id) for run_id, _ in unreported)
    first = unreported[0][1]
    error = StoreError(f"Runs {ids} lost writes. The first: {first.message}")
    error.__cause__ = first.cause
    return error
