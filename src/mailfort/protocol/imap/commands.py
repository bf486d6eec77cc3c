"""Parsed IMAP commands (RFC 3501, RFC 9051 and the extensions mailfort serves).

The parser produces these; the server executes them. All are frozen, slotted, keyword-only.
Mailbox names are carried as the client sent them (modified UTF-7 unless UTF8=ACCEPT was enabled);
the server decodes them, because only the session knows what was enabled.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


# -- sequence sets (RFC 9051 9: sequence-set) ----------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SeqRange:
    """`start:end`; None stands for `*` (the largest number in use)."""

    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceSet:
    ranges: tuple[SeqRange, ...] = ()
    saved: bool = False  # `$`: the result saved by SEARCH RETURN (SAVE) (RFC 5182)

    def bounds(self, largest: int) -> Iterator[tuple[int, int]]:
        """(low, high) pairs with `*` replaced by `largest`; order within a pair normalized."""
        for r in self.ranges:
            a = largest if r.start is None else r.start
            b = largest if r.end is None else r.end
            yield (a, b) if a <= b else (b, a)

    def contains(self, number: int, largest: int) -> bool:
        return any(lo <= number <= hi for lo, hi in self.bounds(largest))


# -- FETCH (RFC 9051 6.4.5) ----------------------------------------------------------------------
class FetchKind(enum.Enum):
    FLAGS = "FLAGS"
    UID = "UID"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    ENVELOPE = "ENVELOPE"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    BODY = "BODY"  # BODYSTRUCTURE without extension data
    BODY_SECTION = "BODY[]"  # BODY[section]<partial> and BODY.PEEK[...]
    BINARY = "BINARY[]"  # BINARY[section]<partial> and BINARY.PEEK[...] (RFC 3516)
    BINARY_SIZE = "BINARY.SIZE[]"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_TEXT = "RFC822.TEXT"
    MODSEQ = "MODSEQ"  # RFC 7162


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """`[1.2.HEADER.FIELDS (From To)]`: part path, then an optional text specifier."""

    part: tuple[int, ...] = ()
    # None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or "MIME"
    text: str | None = None
    fields: tuple[str, ...] = ()  # upper-cased field names for HEADER.FIELDS[.NOT]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchAtt:
    kind: FetchKind
    section: Section | None = None  # for BODY_SECTION, BINARY, BINARY_SIZE
    partial: tuple[int, int] | None = None  # <origin.count>
    peek: bool = False  # BODY.PEEK / BINARY.PEEK: do not set \Seen


# -- SEARCH (RFC 9051 6.4.4) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SearchKey:
    """One search key. `name` is the upper-case keyword, or one of the structural names:
    "AND" (a parenthesized list or the implicit top-level conjunction; `children`), "OR" (two
    `children`), "NOT" (one child), "SEQSET" (a bare sequence set in `seqset`).

    Arguments: string keys (FROM, SUBJECT, BODY, TEXT, TO, CC, BCC, KEYWORD, UNKEYWORD) use `text`;
    HEADER uses `header` and `text`; date keys (BEFORE, ON, SINCE, SENTBEFORE, SENTON, SENTSINCE)
    use `date`; LARGER/SMALLER/MODSEQ use `number`; UID and SEQSET use `seqset`.
    """

    name: str
    text: str | None = None
    header: str | None = None
    date: datetime.date | None = None
    number: int | None = None
    seqset: SequenceSet | None = None
    children: tuple[SearchKey, ...] = ()


# -- commands ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    tag: str
    name: str  # upper-case command name as sent, e.g. "UID FETCH" is name="FETCH", uid=True
    uid: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Capability(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate(Command):
    mechanism: str  # upper-cased
    initial: bytes | None = None  # SASL-IR (RFC 4959), already base64-decoded; b"" for "="


@dataclass(frozen=True, slots=True, kw_only=True)
class Login(Command):
    user: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, slots=True, kw_only=True)
class Select(Command):
    """SELECT, or EXAMINE (readonly=True)."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False  # (CONDSTORE) select parameter (RFC 7162 3.1.8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(Command):
    mailbox: str
    special_use: tuple[str, ...] = ()  # CREATE-SPECIAL-USE (RFC 6154 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Command):
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename(Command):
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Command):
    """SUBSCRIBE, or UNSUBSCRIBE (subscribe=False)."""

    mailbox: str
    subscribe: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ListCmd(Command):
    """LIST with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154); LSUB."""

    reference: str
    patterns: tuple[str, ...]
    lsub: bool = False
    # upper-cased selection options: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE
    select_options: tuple[str, ...] = ()
    # upper-cased return options: SUBSCRIBED, CHILDREN, SPECIAL-USE (STATUS is below)
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] | None = None  # RETURN (STATUS (MESSAGES UNSEEN ...))
    extended: bool = False  # any LIST-EXTENDED syntax was used


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]  # upper-cased: MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE ...


class LiteralSink(Protocol):
    """Where `CommandReader` puts the octets of a large APPEND message literal as they arrive,
    instead of its memory: the server's spool. A sink that ends up in a parsed command belongs
    to the server from then on; one whose command is abandoned is discarded by the reader."""

    def write(self, data: bytes | bytearray) -> None:
        """Take the next octets; `data` is the reader's own buffer: copy it, do not keep it."""

    def discard(self) -> None:
        """The command was abandoned: forget the octets (called at most once)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendMessage:
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    # The message's octets, or the sink that holds them when the reader spooled them.
    data: bytes | LiteralSink = b""
    binary: bool = False  # literal8 `~{n}` (RFC 3516)


@dataclass(frozen=True, slots=True, kw_only=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]  # more than one with MULTIAPPEND (RFC 3502)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unselect(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE seqset (uid=True, RFC 4315)."""

    seqset: SequenceSet | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Search(Command):
    keys: SearchKey  # always an "AND" at the top
    charset: str | None = None
    # ESEARCH (RFC 4731): None = plain SEARCH response; () = RETURN () which means ALL
    return_options: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch(Command):
    seqset: SequenceSet
    atts: tuple[FetchAtt, ...]  # macros ALL/FAST/FULL already expanded
    changed_since: int | None = None  # CHANGEDSINCE (RFC 7162 3.1.4)


class StoreMode(enum.Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCmd(Command):
    seqset: SequenceSet
    mode: StoreMode
    silent: bool
    flags: tuple[str, ...]  # as sent; system flags keep their backslash
    unchanged_since: int | None = None  # UNCHANGEDSINCE (RFC 7162 3.1.3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Command):
    """COPY, or MOVE (move=True, RFC 6851)."""

    seqset: SequenceSet
    mailbox: str
    move: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle(Command):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Id(Command):
    params: dict[str, str | None] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetQuota(Command):
    root: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetQuotaRoot(Command):
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetQuota(Command):
    root: str
    limits: tuple[tuple[str, int], ...]
