"""Address normalization: the one place an envelope address becomes a key."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailfort.mail.address import (
    AddressError,
    domain_of,
    normalize,
    normalize_domain,
    without_detail,
)

# Text as it can reach us: any code point, including lone surrogates from surrogateescape-decoded
# bytes, and a bias towards the characters that matter to address syntax.
ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from('@<>.+ \t\r\n\x00\x7f[]"\\İK\u2028ß'),
        st.sampled_from(["\udc80", "\udcff", "\ud800"]),
    ),
    max_size=120,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.TEST", "alice@example.test"),
        ("<bob@example.test>", "bob@example.test"),
        ("  carol@example.test  ", "carol@example.test"),
        ("dave@example.test.", "dave@example.test"),
        ("user+tag@example.test", "user+tag@example.test"),
        ("ünïcode@bücher.test", "ünïcode@bücher.test"),
        ('"quoted@local"@example.test', '"quoted@local"@example.test'),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "<>",
        "alice",
        "@example.test",
        "alice@",
        "alice@.",
        "alice@exa mple.test",
        "ali ce@example.test",
        "alice@example..test",
        "alice@[127.0.0.1",
        "alice\r\n@example.test",
        "alice\x00@example.test",
        "alice\x7f@example.test",
        "<<alice@example.test>>",
        "alice>@example.test",
        "alice@example.test>",
        "\udcff@example.test",
        "a" * 65 + "@example.test",
        "alice@" + "a" * 256,
        # 32 × İ is 64 octets, but 96 once lower-cased (İ → i + U+0307): too long.
        "İ" * 32 + "@example.test",
    ],
)
def test_not_addresses(raw: str) -> None:
    with pytest.raises(AddressError):
        normalize(raw)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
@example("<<a@b>>")
@example("\ud800@example.test")
@example("İ" * 22 + "@b")
def test_normalize_never_raises_anything_but_address_error(text: str) -> None:
    with contextlib.suppress(AddressError):
        normalize(text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        ANY_TEXT,
        st.builds(
            lambda local, domain: f"{local}@{domain}",
            ANY_TEXT.filter(bool),
            st.lists(st.text("abcXYZ09-İK", min_size=1, max_size=12), min_size=1, max_size=4).map(
                ".".join
            ),
        ),
    )
)
@example("<<a@b>>")
@example("İ" * 22 + "@b")
def test_normalize_is_idempotent(text: str) -> None:
    try:
        once = normalize(text)
    except AddressError:
        return
    assert normalize(once) == once
    assert normalize(f"<{once}>") == once
    assert once == once.strip()
    assert domain_of(once) == once.rpartition("@")[2]


def test_without_detail() -> None:
    assert without_detail("user+tag@d.test", "+") == "user@d.test"
    assert without_detail("user+a+b@d.test", "+") == "user@d.test"
    assert without_detail("user@d.test", "+") is None
    assert without_detail("+tag@d.test", "+") is None
    assert without_detail("user-tag@d.test", "-") == "user@d.test"
    assert without_detail("user+tag@d.test", "") is None


def test_normalize_domain() -> None:
    assert normalize_domain("Example.TEST.") == "example.test"
    assert normalize_domain("bücher.test") == "bücher.test"
    for bad in ("", ".", "a..b", "exa mple.test", "user@a.test", "<a.test>", "a\r\n.test"):
        assert normalize_domain(bad) is None, bad
