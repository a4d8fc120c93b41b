"""Every ```python block of each page in docs/ runs as written, in order, sharing
one namespace per page (STYLE: every code block is executed)."""

import contextlib
import io
from pathlib import Path

import pytest

from tests.test_readme import python_blocks

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def run_page(page: Path) -> str:
    """Run the page's blocks in order; what they printed."""
    blocks = python_blocks(page.read_text())
    assert blocks, f"{page.name} has no ```python block"
    namespace: dict[str, object] = {"__name__": f"__docs_{page.stem}__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, source in enumerate(blocks, 1):
            exec(compile(source, f"{page}:block-{i}", "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_blocks_run(page: Path, tmp_path: Path) -> None:
    # Synchronous on purpose: the blocks call asyncio.run(), which needs no running loop.
    with contextlib.chdir(tmp_path):
        run_page(page)


PRINTS: dict[str, tuple[str, ...]] = {
    "compatibility.md": (
        "attempt 1 at test:bank-model failed; the next one after 0.5 s",
        "encodes back to what was stored: True",
        "journal entry has schema version 5, newer than this orchestrion understands (4); "
        "upgrade orchestrion",
        "Journal entry 7 (teller/turn-2/tool/pay#c1), a tool step completed, cannot be read: "
        "it has no field 'content'.",
        "has layout version 99, newer than this orchestrion understands (4): upgrade orchestrion.",
    ),
    "typing.md": ("ACME: 4,800.00",),
    "resilience.md": (
        "Balance: 4,800.00",
        "teller/turn-1/model: attempt 1 failed: test:bank-model: HTTP 503 (injected)",
        "teller/turn-1/model: attempt 2 failed: test:bank-model: HTTP 503 (injected)",
        "pong",
        "test:primary -> test:backup",
        "Answered by the backup.",
        "Handled by the backup desk.",
        "circuit test:fragile: closed -> open",
        "3 calls reached the model in 10 runs",
        "test:fragile: open, a probe in 30 s",
        "Loan paid.",
        "1 payment applied",
        "True Order placed.",
        "You have 4,800.00.",
    ),
    "workflows.md": (
        "took another path on resume: it asks for step 'careless/charge-",
        "journaled in the same scope 'careless', was never asked for",
        "charged 1 time(s)\ncompleted - charged 1 time(s)",
        "uuid random clock",
    ),
    "workers.md": (
        "interrupted ['approval']\ncompleted payments: 1\n",
        "RedisMailboxes('redis://127.0.0.1:6379/0')",
    ),
    "postgres.md": (
        "You have 4,800.00.\nteller/turn-1/model\nteller/turn-1/tool/balance#call_1_0\n"
        "teller/turn-2/model",
    ),
    "security.md": (
        "ops/turn-1/tool/read_config#r1: token = <redacted>",
        "ops/turn-2/tool/connect#c1: db-1 refused token <redacted>; try the replica.",
        "Unknown store scheme 'mysql' in 'mysql://admin:<redacted>@db.example.com/app'",
        "retrying with Authorization: Bearer <redacted>",
    ),
}
PRINTS["observability.md"] = (
    "You have 4,800.00.\n"
    "invoke_workflow bank\n"
    "  invoke_agent manager\n"
    "    chat scripted\n"
    "    execute_tool delegate_to_teller\n"
    "      invoke_agent teller\n"
    "        chat scripted\n"
    "        execute_tool balance\n"
    "        chat scripted\n"
    "    chat scripted\n",
    'orchestrion_runs_finished_total{runnable="teller",status="completed"} 1.0\n'
    'orchestrion_steps_total{kind="model",status="completed"} 2.0\n'
    'orchestrion_steps_total{kind="tool",status="completed"} 1.0\n',
    '"logger": "orchestrion.run", "message": "run ',
    '  subgraph c0["Supervisor bank"]\n'
    '    n1["manager<br/>test:scripted"]\n'
    '    n2["balances<br/>test:scripted"]\n'
    '    n3[["get_balance<br/>read"]]\n'
    "  end\n"
    '  n2 -.->|"calls"| n3\n'
    '  n1 -->|"delegates"| n2\n',
    "(input) input manager: 1 time(s), 174 tokens\n"
    "manager delegates balances: 1 time(s), 26 tokens\n"
    "get_balance: 1 call(s), 0 failed\n",
)
NEVER_PRINTED = {"security.md": ("vault-7f3a9c2e41", "hunter2")}


@pytest.mark.parametrize("page", sorted(PRINTS))
def test_the_page_prints_what_it_says(page: str, tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        printed = run_page(DOCS / page)
    for expected in PRINTS[page]:
        assert expected in printed, f"{expected!r} not in:\n{printed}"
    for secret in NEVER_PRINTED.get(page, ()):
        assert secret not in printed


def test_the_ownership_page_prints_what_it_says(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        printed = run_page(DOCS / "ownership.md")
    lines = printed.splitlines()
    assert lines[:3] == [
        "approved: completed Paid.",
        lines[1],  # the owner's name holds this process's host and pid
        "payments: 1",
    ]
    assert lines[1].startswith("refused: Run loan-1 is being worked on by ")
    assert lines[3:] == [
        "still owned by gone-host:1:dead",
        "orphaned: True",
        "interrupted waiting for approval",
        "loan-3 cancelled",
    ]


def test_the_limits_page_prints_what_it_says(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        printed = run_page(DOCS / "limits.md")
    for expected in (
        "stopped 100\n",
        "it made 100 model calls of 100 (the default limit) (Budget model_calls). Its 200 steps",
        "runtime.resume('wander-1', budget=Budget(model_calls=200)) or "
        "`orchestrion resume wander-1 --max-model-calls 200`; Budget(model_calls=None) removes",
        "stopped 150\n",
        "Paid 4,812.50. [4812.5]",
        "Tool 'pay_loan' was not run: it may run only once per run",
        "stopped [5000, 22000]",
        "Agent 'keen' was about to call write tool transfer in a 3rd turn",
    ):
        assert expected in printed, f"{expected!r} not in:\n{printed}"
