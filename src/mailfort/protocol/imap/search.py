"""SEARCH keys evaluated against one message (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 7162 3.1.5).

The server hands in any `SearchableMessage` (the index columns: UID, flags, internal date, size,
modseq; and the stored bytes as `data`, possibly loaded on first use); `needs_body(key)` tells
whether the bytes will be wanted at all, so that flag, size, date and number searches never
load a body. Within an AND the keys that need no bytes are tried first.

Semantics chosen where the RFC leaves room:
- String keys match a case-insensitive (Unicode casefold) substring of decoded text: header
  values with RFC 2047 encoded-words decoded and 8-bit read as UTF-8 (RFC 6532); BODY searches
  the text/* parts with Content-Transfer-Encoding and charset undone, plus the headers of
  encapsulated messages (they are body text of the outer message); TEXT adds the top header.
  Non-text parts (images, PDFs) are not searched.
- HEADER/FROM/… with an empty string match every message that has that field (RFC 9051).
- SENTBEFORE/SENTON/SENTSINCE use the Date field's date as written (its own time zone); a
  message without a readable Date uses its internal date, so that it still sorts somewhere.
  BEFORE/ON/SINCE use the internal date's date in the time zone it carries.
- mailfort keeps no \\Recent (IMAP4rev2 dropped it): RECENT matches only if the
  server put "\\Recent" into `flags`, which it does not, so RECENT and NEW match nothing and OLD
  matches everything.
- `$` (SEARCHRES, RFC 5182) matches the UIDs the server passes as `saved`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Protocol

from mailfort.mail.mime import (
    SLICE,
    Part,
    decode_body,
    decode_header_value,
    decode_text,
    parse,
)

if TYPE_CHECKING:  # the IMAP AST is only a type here; `mail/` does not depend on `protocol/`
    from mailfort.protocol.imap.commands import SearchKey, SequenceSet

_FLAG_KEYS = {
    "ANSWERED": "\\answered",
    "DELETED": "\\deleted",
    "DRAFT": "\\draft",
    "FLAGGED": "\\flagged",
    "SEEN": "\\seen",
    "RECENT": "\\recent",
}
_UNFLAG_KEYS = {f"UN{name}": flag for name, flag in _FLAG_KEYS.items() if name != "RECENT"}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_DATA_KEYS = frozenset({"BODY", "TEXT", "HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"}) | frozenset(
    _HEADER_KEYS
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# RFC 5322 3.3 date = day month year; the optional day-of-week before it is skipped.
_DATE = re.compile(r"(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\b")


class SearchableMessage(Protocol):
    """What a search looks at: the index columns, and the stored bytes in `data`, which is read
    only when `needs_body(key)` (a property that loads on first use fits here)."""

    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> Collection[str]: ...
    @property
    def internal_date(self) -> datetime.datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...
    @property
    def data(self) -> bytes: ...


class LazyMessage:
    """A `SearchableMessage` whose bytes come from a loader, called at most once."""

    __slots__ = ("_data", "_loader", "flags", "internal_date", "modseq", "size", "uid")

    def __init__(
        self,
        *,
        uid: int,
        flags: Collection[str],
        internal_date: datetime.datetime,
        size: int,
        modseq: int = 0,
        data: bytes | Callable[[], bytes] = b"",
    ) -> None:
        self.uid = uid
        self.flags = flags
        self.internal_date = internal_date
        self.size = size
        self.modseq = modseq
        self._data: bytes | None = data if isinstance(data, bytes) else None
        self._loader: Callable[[], bytes] | None = None if isinstance(data, bytes) else data

    @property
    def data(self) -> bytes:
        if self._data is None:
            assert self._loader is not None
            self._data = self._loader()
            self._loader = None
        return self._data


class _View:
    """One message as one search sees it: everything derived is computed once, on demand."""

    __slots__ = ("_body_texts", "_header_texts", "_lower_flags", "_part", "_sent", "msg")

    def __init__(self, msg: SearchableMessage) -> None:
        self.msg = msg
        self._part: Part | None = None
        self._lower_flags: frozenset[str] | None = None
        self._header_texts: dict[str, list[str]] | None = None
        self._body_texts: list[str] | None = None
        self._sent: datetime.date | None = None

    @property
    def part(self) -> Part:
        if self._part is None:
            self._part = parse(self.msg.data)
        return self._part

    def has_flag(self, flag: str) -> bool:
        """Flags and keywords compare case-insensitively (RFC 9051 2.3.2)."""
        if self._lower_flags is None:
            self._lower_flags = frozenset(f.lower() for f in self.msg.flags)
        return flag.lower() in self._lower_flags

    def header_texts(self, name: str) -> list[str]:
        """Decoded, casefolded values of every top-level field called `name`."""
        if self._header_texts is None:
            texts: dict[str, list[str]] = {}
            for f in self.part.fields:
                texts.setdefault(f.name, []).append(decode_header_value(f.value).casefold())
            self._header_texts = texts
        return self._header_texts.get(name.lower(), [])

    def header_text(self) -> str:
        """The whole top-level header, decoded and casefolded."""
        return "\n".join(
            f"{f.name}: {decode_header_value(f.value).casefold()}" for f in self.part.fields
        )

    def body_texts(self) -> list[str]:
        """Decoded, casefolded text of the body (see the module docstring)."""
        if self._body_texts is None:
            self._body_texts = [_casefold(text) for text in _body_texts(self.msg.data, self.part)]
        return self._body_texts

    def sent_date(self) -> datetime.date:
        if self._sent is None:
            date = self.part.header("date")
            sent = sent_date(date) if date is not None else None
            self._sent = sent or self.msg.internal_date.date()
        return self._sent


def _casefold(text: str) -> str:
    """`text.casefold()` in slices: one call over a 25 MB part holds the interpreter lock for
    a tenth of a second (casefolding maps each character on its own, so slices join exactly)."""
    if len(text) <= SLICE:
        return text.casefold()
    return "".join(text[i : i + SLICE].casefold() for i in range(0, len(text), SLICE))


def _body_texts(data: bytes, root: Part) -> list[str]:
    out: list[str] = []
    for part in root.walk():
        if part.message is not None:
            out.append(
                "\n".join(f"{f.name}: {decode_header_value(f.value)}" for f in part.message.fields)
            )
        elif part.type == "text" and not part.is_multipart:
            raw = data[part.body_start : part.body_end]
            decoded = decode_body(raw, part.encoding)
            out.append(decode_text(raw if decoded is None else decoded, part.param("charset")))
    return out


def sent_date(value: bytes) -> datetime.date | None:
    """The date part of a Date field as written (RFC 5322 3.3), or None when unreadable."""
    m = _DATE.search(value.decode("latin-1"))
    if m is None:
        return None
    month = _MONTHS.get(m.group(2).lower())
    if month is None:
        return None
    year = int(m.group(3))
    if len(m.group(3)) == 2:  # RFC 5322 4.3: obsolete two- and three-digit years
        year += 2000 if year < 50 else 1900
    elif len(m.group(3)) == 3:
        year += 1900
    try:
        return datetime.date(year, month, int(m.group(1)))
    except ValueError:
        return None


def needs_body(key: SearchKey) -> bool:
    """Whether evaluating `key` reads the stored message (its header or its body)."""
    return key.name in _DATA_KEYS or any(needs_body(child) for child in key.children)


def matches(
    key: SearchKey,
    msg: SearchableMessage,
    *,
    seq: int,
    largest_seq: int,
    largest_uid: int,
    saved: Collection[int] = frozenset(),
) -> bool:
    """Whether message `msg` (sequence number `seq`) satisfies `key`. `saved` holds the UIDs of
    the SEARCHRES result `$` (a set is fastest). Raises ValueError for a key name the parser
    never produces."""
    return _Evaluator(_View(msg), seq, largest_seq, largest_uid, saved).eval(key)


class _Evaluator:
    __slots__ = ("largest_seq", "largest_uid", "saved", "seq", "view")

    def __init__(
        self,
        view: _View,
        seq: int,
        largest_seq: int,
        largest_uid: int,
        saved: Collection[int],
    ) -> None:
        self.view = view
        self.seq = seq
        self.largest_seq = largest_seq
        self.largest_uid = largest_uid
        self.saved = saved

    def eval(self, key: SearchKey) -> bool:
        name = key.name
        view = self.view
        msg = view.msg
        if name == "AND":
            return all(self.eval(child) for child in sorted(key.children, key=needs_body))
        if name == "OR":
            return any(self.eval(child) for child in sorted(key.children, key=needs_body))
        if name == "NOT":
            return not all(self.eval(child) for child in key.children)
        if name == "ALL":
            return True
        if name in _FLAG_KEYS:
            return view.has_flag(_FLAG_KEYS[name])
        if name in _UNFLAG_KEYS:
            return not view.has_flag(_UNFLAG_KEYS[name])
        if name == "NEW":  # RFC 3501 6.4.4: RECENT UNSEEN
            return view.has_flag("\\recent") and not view.has_flag("\\seen")
        if name == "OLD":
            return not view.has_flag("\\recent")
        if name == "KEYWORD":
            return view.has_flag(_text(key))
        if name == "UNKEYWORD":
            return not view.has_flag(_text(key))
        if name == "LARGER":
            return msg.size > _number(key)
        if name == "SMALLER":
            return msg.size < _number(key)
        if name == "MODSEQ":  # RFC 7162 3.1.5: mod-sequence at least the given value
            return msg.modseq >= _number(key)
        if name == "UID":
            return self._in_set(_seqset(key), msg.uid, self.largest_uid)
        if name == "SEQSET":
            return self._in_set(_seqset(key), self.seq, self.largest_seq)
        if name in ("BEFORE", "ON", "SINCE"):
            return _compare_date(name, msg.internal_date.date(), _date(key))
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            return _compare_date(name[4:], view.sent_date(), _date(key))
        if name in _HEADER_KEYS:
            return _contains(view.header_texts(_HEADER_KEYS[name]), _text(key))
        if name == "HEADER":
            if key.header is None:
                raise ValueError("HEADER without a field name")
            return _contains(view.header_texts(key.header), _text(key))
        if name == "BODY":
            return _contains(view.body_texts(), _text(key))
        if name == "TEXT":
            return _contains([view.header_text(), *view.body_texts()], _text(key))
        raise ValueError(f"unknown search key {name!r}")

    def _in_set(self, seqset: SequenceSet, number: int, largest: int) -> bool:
        if seqset.saved:
            # RFC 5182 2.1: `$` is the saved result, which the server keeps as UIDs.
            return self.view.msg.uid in self.saved
        return seqset.contains(number, largest)


def _contains(haystacks: list[str], needle: str) -> bool:
    needle = needle.casefold()
    return any(needle in text for text in haystacks)


def _compare_date(how: str, day: datetime.date, key: datetime.date) -> bool:
    if how == "BEFORE":
        return day < key
    if how == "ON":
        return day == key
    return day >= key  # SINCE: on or after


def _text(key: SearchKey) -> str:
    if key.text is None:
        raise ValueError(f"{key.name} without a string")
    return key.text


def _number(key: SearchKey) -> int:
    if key.number is None:
        raise ValueError(f"{key.name} without a number")
    return key.number


def _date(key: SearchKey) -> datetime.date:
    if key.date is None:
        raise ValueError(f"{key.name} without a date")
    return key.date


def _seqset(key: SearchKey) -> SequenceSet:
    if key.seqset is None:
        raise ValueError(f"{key.name} without a sequence set")
    return key.seqset
