"""SEARCH keys (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 7162 MODSEQ) over the hand-written messages."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from mailfort.protocol.imap.commands import SearchKey, SeqRange, SequenceSet
from mailfort.protocol.imap.search import LazyMessage, matches, needs_body, sent_date
from tests.unit.mime.fixtures import load

ARRIVED = datetime.datetime(
    2025, 1, 5, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
)


def message(name: str = "nested.eml", **overrides: object) -> LazyMessage:
    data = load(name)
    fields: dict[str, object] = {
        "uid": 7,
        "flags": frozenset({"\\Seen", "$Label1"}),
        "internal_date": ARRIVED,
        "size": len(data),
        "modseq": 40,
        "data": data,
    }
    fields.update(overrides)
    return LazyMessage(**fields)  # type: ignore[arg-type]


def key(name: str, **kw: object) -> SearchKey:
    return SearchKey(name=name, **kw)  # type: ignore[arg-type]


def check(k: SearchKey, msg: LazyMessage | None = None, *, seq: int = 3) -> bool:
    return matches(k, msg or message(), seq=seq, largest_seq=10, largest_uid=20)


def seqset(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(ranges=tuple(SeqRange(start=a, end=b) for a, b in ranges))


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (key("ALL"), True),
        (key("SEEN"), True),
        (key("UNSEEN"), False),
        (key("ANSWERED"), False),
        (key("UNANSWERED"), True),
        (key("DELETED"), False),
        (key("UNDELETED"), True),
        (key("DRAFT"), False),
        (key("UNDRAFT"), True),
        (key("FLAGGED"), False),
        (key("UNFLAGGED"), True),
        # mailfort keeps no \Recent: RECENT and NEW never match, OLD always does
        (key("RECENT"), False),
        (key("NEW"), False),
        (key("OLD"), True),
        (key("KEYWORD", text="$label1"), True),  # keywords compare case-insensitively
        (key("UNKEYWORD", text="$Label1"), False),
        (key("KEYWORD", text="$Other"), False),
        (key("MODSEQ", number=40), True),
        (key("MODSEQ", number=41), False),
        (key("UID", seqset=seqset((5, 8))), True),
        (key("UID", seqset=seqset((8, None))), False),
        (key("SEQSET", seqset=seqset((3, 3))), True),
        (key("SEQSET", seqset=seqset((None, None))), False),  # * is 10
        (key("NOT", children=(key("SEEN"),)), False),
        (key("OR", children=(key("DELETED"), key("SEEN"))), True),
        (key("AND", children=(key("SEEN"), key("UNFLAGGED"))), True),
        (key("AND", children=(key("SEEN"), key("FLAGGED"))), False),
    ],
)
def test_flag_and_number_keys(k: SearchKey, expected: bool) -> None:
    assert check(k) is expected


def test_size_keys() -> None:
    msg = message(size=1000)
    assert check(key("LARGER", number=999), msg)
    assert not check(key("LARGER", number=1000), msg)
    assert check(key("SMALLER", number=1001), msg)
    assert not check(key("SMALLER", number=1000), msg)


def test_internal_date_keys_use_its_own_time_zone() -> None:
    # 2025-01-05 23:30 -05:00 is 2025-01-06 in UTC; the date part as stored is the 5th.
    day = datetime.date(2025, 1, 5)
    assert check(key("ON", date=day))
    assert check(key("SINCE", date=day))
    assert not check(key("BEFORE", date=day))
    assert check(key("BEFORE", date=day + datetime.timedelta(days=1)))


def test_sent_date_keys_use_the_date_field() -> None:
    # nested.eml: Date: Tue, 14 May 2024 09:30:00 +0200 -> 2024-05-14 as written.
    day = datetime.date(2024, 5, 14)
    assert check(key("SENTON", date=day))
    assert check(key("SENTSINCE", date=day))
    assert not check(key("SENTBEFORE", date=day))
    assert check(key("SENTBEFORE", date=datetime.date(2024, 5, 15)))


def test_sent_date_falls_back_to_internal_date() -> None:
    msg = message("missing-headers.eml")
    assert check(key("SENTON", date=datetime.date(2025, 1, 5)), msg)


@pytest.mark.parametrize(
    ("value", "day"),
    [
        (b"Tue, 14 May 2024 09:30:00 +0200", datetime.date(2024, 5, 14)),
        (b"1 Jan 99 00:00 GMT", datetime.date(1999, 1, 1)),  # RFC 5322 4.3 two-digit year
        (b"3 Feb 49 00:00 GMT", datetime.date(2049, 2, 3)),
        (b"31 Feb 2024 00:00 GMT", None),
        (b"yesterday", None),
    ],
)
def test_sent_date(value: bytes, day: datetime.date | None) -> None:
    assert sent_date(value) == day


@pytest.mark.parametrize(
    ("name", "k", "expected"),
    [
        # encoded-word (B) subject decoded before matching: "Übersicht 2024"
        ("nested.eml", key("SUBJECT", text="übersicht"), True),
        ("nested.eml", key("SUBJECT", text="w5xi"), False),
        # Q encoding in ISO-8859-1, across a fold and two words
        ("encoded-words.eml", key("SUBJECT", text="CRÈME BRÛLÉE and"), True),
        ("encoded-words.eml", key("FROM", text="andré pirard"), True),
        ("encoded-words.eml", key("TO", text="jörg"), True),
        ("nested.eml", key("FROM", text="anna@example.org"), True),
        ("nested.eml", key("CC", text=""), False),  # no Cc field at all
        ("groups.eml", key("CC", text="relay.example.net"), True),
        ("groups.eml", key("BCC", text="x"), False),
        ("groups.eml", key("SUBJECT", text=""), True),  # empty string: the field exists
        ("nested.eml", key("HEADER", header="Message-Id", text="nested-1"), True),
        ("nested.eml", key("HEADER", header="X-Absent", text=""), False),
        ("missing-headers.eml", key("HEADER", header="x-note", text=""), True),
        # 8-bit (RFC 6532) header read as UTF-8
        ("eightbit.eml", key("SUBJECT", text="grüße"), True),
        # BODY: QP + charset decoded text parts
        ("nested.eml", key("BODY", text="die übersicht"), True),
        ("nested.eml", key("BODY", text="<br>anbei"), True),  # the HTML part is text too
        ("nested.eml", key("BODY", text="%PDF"), False),  # not a text part
        ("nested.eml", key("BODY", text="Mueller"), False),  # the header is not body
        ("nested.eml", key("TEXT", text="Mueller"), True),
        ("nested.eml", key("TEXT", text="die übersicht"), True),
        ("encoded-words.eml", key("BODY", text="café crème"), True),  # ISO-8859-1 via QP
        ("eightbit.eml", key("BODY", text="SCHÖNE"), True),  # 8-bit, no MIME header
        ("lf-multipart.eml", key("BODY", text="héllo"), True),  # base64 UTF-8
        # the headers of an attached message are body text of the outer one
        ("forwarded.eml", key("BODY", text="earlier@example.com"), True),
        ("forwarded.eml", key("BODY", text="meet at noon"), True),
        ("forwarded.eml", key("SUBJECT", text="Fwd"), True),
        ("forwarded.eml", key("FROM", text="eve@"), False),  # only the top header
    ],
)
def test_string_keys(name: str, k: SearchKey, expected: bool) -> None:
    assert check(k, message(name)) is expected


def test_flag_searches_never_load_the_message() -> None:
    def loader() -> bytes:
        raise AssertionError("the message was loaded")

    msg = message(data=loader)
    flag_only = key(
        "AND",
        children=(
            key("SEEN"),
            key("OR", children=(key("LARGER", number=1), key("UID", seqset=seqset((1, None))))),
        ),
    )
    assert not needs_body(flag_only)
    assert check(flag_only, msg)
    # Within an AND, the cheap keys go first, so a failing flag key spares the load.
    assert not check(key("AND", children=(key("BODY", text="x"), key("DELETED"))), msg)


def test_data_is_loaded_once() -> None:
    calls: list[int] = []

    def loader() -> bytes:
        calls.append(1)
        return load("nested.eml")

    msg = message(data=loader)
    k = key("AND", children=(key("BODY", text="Bob"), key("SUBJECT", text="2024")))
    assert needs_body(k)
    assert check(k, msg)
    assert check(key("TEXT", text="outer"), msg)
    assert calls == [1]


def test_saved_result() -> None:
    saved = SequenceSet(saved=True)
    msg = message()
    assert matches(key("UID", seqset=saved), msg, seq=1, largest_seq=1, largest_uid=9, saved={7})
    assert not matches(key("SEQSET", seqset=saved), msg, seq=1, largest_seq=1, largest_uid=9)


def test_unknown_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check(key("FUZZY"))


@dataclasses.dataclass
class PlainRow:
    """Any object with the protocol's attributes will do, e.g. the server's own adapter."""

    uid: int
    flags: frozenset[str]
    internal_date: datetime.datetime
    size: int
    modseq: int
    data: bytes


def test_any_object_with_the_attributes() -> None:
    row = PlainRow(1, frozenset({"\\Flagged"}), ARRIVED, 10, 1, load("groups.eml"))
    assert matches(key("FLAGGED"), row, seq=1, largest_seq=1, largest_uid=1)
    assert matches(key("FROM", text="robert"), row, seq=1, largest_seq=1, largest_uid=1)
