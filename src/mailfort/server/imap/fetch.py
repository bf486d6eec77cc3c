"""FETCH: parsed attributes and stored bytes become `* n FETCH (...)` (RFC 9051 6.4.5)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailfort.mail import mime
from mailfort.protocol.imap import response, sections
from mailfort.protocol.imap.bodystructure import bodystructure
from mailfort.protocol.imap.commands import FetchAtt, FetchKind, Section
from mailfort.protocol.imap.envelope import envelope
from mailfort.server.imap.cache import MessageMeta
from mailfort.store.records import MessageRow

META_KINDS = frozenset({FetchKind.ENVELOPE, FetchKind.BODYSTRUCTURE, FetchKind.BODY})
_CONTENT_KINDS = frozenset(
    {
        FetchKind.BODY_SECTION,
        FetchKind.BINARY,
        FetchKind.BINARY_SIZE,
        FetchKind.RFC822,
        FetchKind.RFC822_HEADER,
        FetchKind.RFC822_TEXT,
    }
)
_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


class UnknownTransferEncoding(Exception):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode (RFC 3516 4.3)."""


def _header_only(att: FetchAtt) -> bool:
    if att.kind is FetchKind.RFC822_HEADER:
        return True
    return (
        att.kind is FetchKind.BODY_SECTION
        and att.section is not None
        and not att.section.part
        and att.section.text in _HEADER_TEXTS
    )


def needs_meta(atts: tuple[FetchAtt, ...]) -> bool:
    return any(a.kind in META_KINDS or _header_only(a) for a in atts)


def needs_bytes(atts: tuple[FetchAtt, ...]) -> bool:
    """True when some attribute needs more than the cached header and structure."""
    return any(a.kind in _CONTENT_KINDS and not _header_only(a) for a in atts)


def sets_seen(atts: tuple[FetchAtt, ...]) -> bool:
    """BODY[...] and BINARY[...] without .PEEK, RFC822 and RFC822.TEXT set \\Seen (6.4.5)."""
    return any(
        (a.kind in (FetchKind.BODY_SECTION, FetchKind.BINARY) and not a.peek)
        or a.kind in (FetchKind.RFC822, FetchKind.RFC822_TEXT)
        for a in atts
    )


def build_meta(data: bytes) -> MessageMeta:
    part = mime.parse(data)
    header = sections.section(data, part, Section(text="HEADER")) or b""
    return MessageMeta(
        envelope=envelope(part),
        bodystructure=bodystructure(part, extended=True),
        body=bodystructure(part, extended=False),
        header=header,
    )


def flag_list(flags: frozenset[str]) -> bytes:
    return b"(" + " ".join(sorted(flags)).encode() + b")"


def _content(value: bytes, *, binary: bool = False) -> bytes:
    # literal8 (RFC 3516 4.2) only in BINARY answers, and only when the content holds NUL;
    # BODY[] carries the stored bytes as they are, which is what clients expect.
    if binary and b"\0" in value:
        return b"~{%d}\r\n" % len(value) + value
    return b"{%d}\r\n" % len(value) + value


def _cut(value: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return value
    origin, count = partial
    return value[origin : origin + count]


def internaldate(timestamp: float) -> bytes:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return b'"' + response.format_internaldate(moment) + b'"'


class MessageView:
    """What rendering one message needs; the parsed MIME tree is built only when asked for."""

    def __init__(self, row: MessageRow, data: bytes | None, meta: MessageMeta | None) -> None:
        self.row = row
        self.data = data
        self.meta = meta
        self._part: mime.Part | None = None

    @property
    def part(self) -> mime.Part:
        if self._part is None:
            assert self.data is not None
            self._part = mime.parse(self.data)
        return self._part

    def header(self) -> bytes:
        if self.meta is not None:
            return self.meta.header
        assert self.data is not None
        return sections.section(self.data, self.part, Section(text="HEADER")) or b""


def _section_value(view: MessageView, att: FetchAtt) -> bytes:
    section = att.section or Section()
    if not section.part and section.text is None and view.data is not None:
        return view.data  # BODY[]: the message as stored; no need to parse its structure
    if _header_only(att) and section.text == "HEADER":
        return view.header()
    if _header_only(att):
        # HEADER.FIELDS[.NOT] (what every client fetches for its message list) straight from
        # the cached header block.
        return sections.header_block_fields(
            view.header(), section.fields, exclude=section.text == "HEADER.FIELDS.NOT"
        )
    assert view.data is not None
    return sections.section(view.data, view.part, section) or b""


def render(att: FetchAtt, view: MessageView, *, modseq: int) -> tuple[bytes, bytes]:
    """(label, value) of one attribute for one message."""
    kind = att.kind
    row = view.row
    if kind is FetchKind.FLAGS:
        return b"FLAGS", flag_list(row.flags)
    if kind is FetchKind.UID:
        return b"UID", b"%d" % row.uid
    if kind is FetchKind.INTERNALDATE:
        return b"INTERNALDATE", internaldate(row.internal_date)
    if kind is FetchKind.RFC822_SIZE:
        return b"RFC822.SIZE", b"%d" % row.size
    if kind is FetchKind.MODSEQ:
        return b"MODSEQ", b"(%d)" % modseq
    if kind in META_KINDS:
        assert view.meta is not None
        value = {
            FetchKind.ENVELOPE: view.meta.envelope,
            FetchKind.BODYSTRUCTURE: view.meta.bodystructure,
            FetchKind.BODY: view.meta.body,
        }[kind]
        return kind.value.encode(), value
    if kind is FetchKind.RFC822:
        assert view.data is not None
        return b"RFC822", _content(view.data)
    if kind is FetchKind.RFC822_HEADER:
        return b"RFC822.HEADER", _content(view.header())
    if kind is FetchKind.RFC822_TEXT:
        assert view.data is not None
        text = sections.section(view.data, view.part, Section(text="TEXT")) or b""
        return b"RFC822.TEXT", _content(text)
    label = response.fetch_label(att)
    if kind is FetchKind.BODY_SECTION:
        return label, _content(_cut(_section_value(view, att), att.partial))
    assert view.data is not None
    decoded = sections.binary(view.data, view.part, att.section or Section())
    if decoded is None:
        raise UnknownTransferEncoding()
    if kind is FetchKind.BINARY_SIZE:
        return label, b"%d" % len(decoded)
    return label, _content(_cut(decoded, att.partial), binary=True)


def flag_update(seq: int, row: MessageRow, *, uid: bool, flags: bool = True, modseq: bool) -> bytes:
    """`* 3 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (12))`: what STORE answers and what a session is
    told of flags other sessions changed. MODSEQ for CONDSTORE clients (RFC 7162 3.1.3, 3.2.4)."""
    items: list[tuple[bytes, bytes]] = []
    if uid:
        items.append((b"UID", b"%d" % row.uid))
    if flags:
        items.append((b"FLAGS", flag_list(row.flags)))
    if modseq:
        items.append((b"MODSEQ", b"(%d)" % row.modseq))
    return response.fetch_response(seq, items)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchItem:
    """One message of a FETCH batch, as the loop knows it when the batch is handed over."""

    uid: int
    seq: int
    row: MessageRow | None  # None: expunged by another session meanwhile
    data: bytes | None  # the stored bytes, when the batch read them
    meta: MessageMeta | None  # from the cache
    needed_data: bool  # the bytes were asked for (so None means the message is gone)


@dataclass(slots=True)
class RenderedBatch:
    lines: list[bytes] = field(default_factory=list)
    metas: dict[int, MessageMeta] = field(default_factory=dict)  # built here, to cache
    expunged: bool = False
    unknown_cte: bool = False  # rendering stopped: answer NO [UNKNOWN-CTE], send nothing more


def render_batch(
    items: Sequence[BatchItem], atts: Sequence[FetchAtt], *, wants_meta: bool
) -> RenderedBatch:
    """The `* n FETCH` lines of one batch. Pure: the server runs it off the event loop when it
    parses messages (a 25 MB message of 5,000 parts takes a tenth of a second)."""
    out = RenderedBatch()
    for item in items:
        row, body = item.row, item.data
        if row is None or (item.needed_data and body is None):
            out.expunged = True
            continue
        meta = item.meta
        if wants_meta and meta is None:
            assert body is not None
            meta = out.metas[item.uid] = build_meta(body)
        view = MessageView(row, body, meta)
        try:
            rendered = [render(a, view, modseq=row.modseq) for a in atts]
        except UnknownTransferEncoding:
            out.unknown_cte = True
            return out
        out.lines.append(response.fetch_response(item.seq, rendered))
    return out
