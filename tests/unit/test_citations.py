"""Comments and docstrings cite RFCs and behaviours, never issue numbers.

A reader of the code cannot look an issue up (the tracker is not part of the source), so "see
issue 6" explains nothing; "RFC 9051 7.1" or "a fault is on the page within a minute" does.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ("src", "tests", "benchmarks")

# "issue 6", "Issue #12", "issues 3 and 5", "(issue 11 item 2)"
ISSUE = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)


def citations(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment or string that cites an issue number."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING) and ISSUE.search(token.string):
            found.append((token.start[0], token.string.strip()[:100]))
    return found


def test_the_checker_sees_comments_and_docstrings() -> None:
    source = '"""Built for issue 6."""\nx = 1  # see Issue #12\ny = "a tissue 3"\n'
    assert [line for line, _ in citations(source)] == [1, 2]


@pytest.mark.parametrize("tree", TREES)
def test_no_issue_numbers_in_comments(tree: str) -> None:
    this = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in sorted((ROOT / tree).rglob("*.py"))
        if path != this and ".venv" not in path.parts
        for line, text in citations(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "cite the RFC or the behaviour instead:\n" + "\n".join(offenders)
