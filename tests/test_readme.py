"""Every ```python block in README.md runs as written (STYLE: every code block is executed)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


BLOCKS = python_blocks(README.read_text())


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README.md has no ```python block to test"


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block-{i + 1}" for i in range(len(BLOCKS))])
def test_readme_block_runs(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Synchronous on purpose: README code calls asyncio.run(), which needs no running loop.
    monkeypatch.chdir(tmp_path)
    code = compile(source, f"{README}:block", "exec")
    exec(code, {"__name__": "__readme__"})
    out = capsys.readouterr().out
    if "Paid 4,800.00 from savings." in source:
        lines = out.splitlines()
        assert lines[0] == "Paid 4,800.00 from savings."
        # The prose under the example quotes one of the keys the example prints.
        quoted = re.findall(r"`(bank/turn-\d+/[^`]+)`", README.read_text())
        assert quoted
        for key in quoted:
            assert f"{key} completed" in lines
