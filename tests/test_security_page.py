"""docs/security.md prints what it says (its blocks also run in tests/test_docs.py)."""

import contextlib
from pathlib import Path

from tests.test_docs import DOCS, run_page


def test_the_security_page_prints_what_it_says(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        printed = run_page(DOCS / "security.md")
    for expected in (
        "ops/turn-1/tool/read_config#r1: token = <redacted>",
        "ops/turn-2/tool/connect#c1: db-1 refused token <redacted>; try the replica.",
        "Unknown store scheme 'postgres' in 'postgres://admin:<redacted>@db.example.com/app'",
        "retrying with Authorization: Bearer <redacted>",
    ):
        assert expected in printed, f"{expected!r} not in:\n{printed}"
    assert "vault-7f3a9c2e41" not in printed
    assert "hunter2" not in printed
