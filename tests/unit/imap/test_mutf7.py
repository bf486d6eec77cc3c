"""Modified UTF-7 (RFC 3501 5.1.3): the RFC's examples, round trips, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailfort.protocol.imap import mutf7
from mailfort.protocol.imap.parser import ProtocolError


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", "INBOX"),
        ("", ""),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
        ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
        ("📧 Mail", "&2D3c5w- Mail"),  # outside the BMP: a UTF-16 surrogate pair
        ("a\tb", "a&AAk-b"),  # controls are encoded too
        ("ää", "&AOQA5A-"),
    ],
)
def test_known_names(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # unterminated
        "&U,BTFw",  # unterminated run
        "Entwürfe",  # 8-bit: a client that did not encode
        "a\tb",  # a control character sent bare
        "&Jjo!-",  # not in the alphabet
        "&U/BTFw-",  # "/" is "," in modified BASE64
        "&AGE-",  # encodes "a", which must stand for itself
        "&ACY-",  # encodes "&", which must be "&-"
        "&AOQ=-",  # padding
        "&A-",  # a single BASE64 character: not even one octet
        "&AO-",  # one octet: not a whole UTF-16 code unit
        "&AOR-",  # unused bits set (not the canonical spelling of "ä")
        "&2D0-",  # a lone high surrogate
        "&3ec-",  # a lone low surrogate
    ],
)
def test_invalid_names_are_protocol_errors(wire: str) -> None:
    with pytest.raises(ProtocolError):
        mutf7.decode(wire)


def test_adjacent_runs_decode() -> None:
    # Not canonical (an encoder merges them), but unambiguous: accepted, and re-encoded merged.
    assert mutf7.decode("&AOQ-&AOQ-") == "ää"


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        mutf7.encode("a\udc80")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
@example("&&&-")
@example("a&b-c")
def test_round_trip(text: str) -> None:
    wire = mutf7.encode(text)
    assert wire.isascii() and all(" " <= ch <= "~" for ch in wire)
    assert mutf7.decode(wire) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="&-AOQ5ZeVnLIqe+,/ab=\t", max_size=20))
def test_decode_raises_only_protocol_errors(wire: str) -> None:
    try:
        text = mutf7.decode(wire)
    except ProtocolError:
        return
    assert mutf7.decode(mutf7.encode(text)) == text
