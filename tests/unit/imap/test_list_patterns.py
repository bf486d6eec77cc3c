"""LIST pattern matching (RFC 9051 6.3.9) without backtracking: same answers as a plain
reference matcher, and a cost bounded by name length times pattern length."""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.server.imap import names


def reference(pattern: str, name: str) -> bool:
    """The RFC's words as a recursive matcher: fine for short inputs, exponential for long."""

    @functools.cache
    def at(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        wildcard = pattern[i]
        if wildcard == "*":
            return any(at(i + 1, k) for k in range(j, len(name) + 1))
        if wildcard == "%":
            ends = range(j, len(name) + 1)
            return any(at(i + 1, k) for k in ends if "/" not in name[j:k])
        return j < len(name) and name[j] == wildcard and at(i + 1, j + 1)

    return at(0, 0)


@settings(max_examples=3000, deadline=None)
@given(
    pattern=st.text(alphabet="ab/*%", max_size=9),
    name=st.text(alphabet="ab/", max_size=12),
)
def test_matches_like_the_reference(pattern: str, name: str) -> None:
    assert names.Pattern(pattern).match(name) == reference(pattern, name)


@settings(max_examples=500, deadline=None)
@given(
    pattern=st.text(alphabet="ab/*%", max_size=7),
    name=st.text(alphabet="ab/", max_size=9),
)
def test_matches_like_the_old_regex(pattern: str, name: str) -> None:
    # The regex the server used before: correct, only slow on long inputs.
    parts = [".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern]
    old = re.compile("".join(parts) + r"\Z", re.DOTALL)
    assert names.Pattern(pattern).match(name) == bool(old.match(name))


@pytest.mark.parametrize(
    ("reference_name", "pattern", "name", "expected"),
    [
        ("", "*", "a/b/c", True),
        ("", "%", "a/b", False),
        ("", "%", "a", True),
        ("", "a/%", "a/b", True),
        ("", "a/%", "a/b/c", False),
        ("", "a/*", "a/b/c", True),
        ("a/", "%", "a/b", True),  # the reference is prefixed
        ("", "inbox", "INBOX", True),  # INBOX ignores case (RFC 9051 5.1)
        ("", "inbox/%", "INBOX/x", True),
        ("", "inb*", "INBOX", False),  # only INBOX itself and its prefix are canonical
        ("", "%*", "a/b", True),  # a run with a "*" crosses the delimiter
        ("", "%%", "a/b", False),
        ("", "", "", True),
        ("", "", "a", False),
        ("", "a", "ab", False),
        ("", "*b", "ab", True),
        ("", "**********Q", "a" * 255, False),
    ],
)
def test_rfc_examples(reference_name: str, pattern: str, name: str, expected: bool) -> None:
    assert names.pattern(reference_name, pattern).match(name) is expected


def _worst_cases() -> list[tuple[str, str]]:
    name = "a" * 255
    return [
        ("*" * 40 + "Q", name),
        ("%*" * 40 + "Q", name),
        ("*a" * 127, name),
        ("%a" * 127 + "Q", name),
        ("*" + "a" * 253 + "Q", name),
        ("*/%" * 300, "a/" * 127),
        ("*a" * 510, "a" * 1020),
    ]


@pytest.mark.parametrize(("pattern", "name"), _worst_cases())
def test_worst_cases_take_few_steps(pattern: str, name: str) -> None:
    """Counted in steps, not seconds: the automaton takes one step per character of the name,
    and its state set has one bit per pattern token."""
    compiled = names.Pattern(pattern)
    steps = _Counting(name)
    compiled.match(steps)  # type: ignore[arg-type]
    assert steps.count <= len(name)
    assert compiled._accept.bit_length() <= len(pattern) + 1


class _Counting(str):
    """A name that counts how often the matcher reads a character of it."""

    count: int

    def __new__(cls, value: str) -> _Counting:
        self = super().__new__(cls, value)
        self.count = 0
        return self

    def __iter__(self):  # type: ignore[no-untyped-def]
        for ch in str.__iter__(self):
            self.count += 1
            yield ch


def test_runs_of_wildcards_collapse() -> None:
    assert names.Pattern("a%*%b")._accept == names.Pattern("a*b")._accept
    assert names.Pattern("%%%").match("a") and not names.Pattern("%%%").match("a/b")


def test_patterns_are_bounded() -> None:
    names.pattern("", "*" * names.MAX_PATTERN)
    with pytest.raises(names.NameError_):
        names.pattern("", "*" * (names.MAX_PATTERN + 1))
    with pytest.raises(names.NameError_):
        names.pattern("a" * names.MAX_PATTERN, "*")
    with pytest.raises(names.NameError_):
        names.decode("a" * (names.MAX_WIRE_NAME + 1), utf8=True)
