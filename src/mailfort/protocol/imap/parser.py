"""The IMAP command grammar: one framed command → a `commands.py` object, or `ProtocolError`.

Grammar: RFC 9051 9 (with RFC 3501 9 where rev1 differs), plus the extensions mailfort serves:
LITERAL+ (RFC 7888), BINARY (RFC 3516), MULTIAPPEND (RFC 3502), UIDPLUS (RFC 4315), CONDSTORE
(RFC 7162), ESEARCH (RFC 4731), SEARCHRES (RFC 5182), LIST-EXTENDED (RFC 5258), LIST-STATUS
(RFC 5819), SPECIAL-USE (RFC 6154), ENABLE (RFC 5161), ID (RFC 2971), SASL-IR (RFC 4959),
QUOTA (RFC 9208), MOVE (RFC 6851), UNSELECT (RFC 3691), IDLE (RFC 2177).

A command arrives as `CommandReader` framed it: line segments without their CRLF, each but the
last ending in a literal marker (`{n}`, `{n+}`, `~{n}`), and the literals' octets between them;
an APPEND message literal may come as the `LiteralSink` the reader spooled it to instead
(`append_data` tells the reader which literals those are).
Whatever goes wrong raises `ProtocolError` (answered `tag BAD text`), never anything else: the
recursion is bounded (`MAX_NESTING`), numbers are range-checked, and the input is never trusted.

Strings become `str` by strict UTF-8 decoding (invalid UTF-8 is `BAD`), except SEARCH arguments
under a CHARSET other than UTF-8/US-ASCII: those are decoded as Latin-1, which keeps every octet,
so the server can re-encode them and answer `NO [BADCHARSET]` (RFC 9051 6.4.4) if it must.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

from mailfort.protocol.imap.commands import (
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    FetchKind,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    ListCmd,
    LiteralSink,
    Login,
    Logout,
    Namespace,
    Noop,
    Rename,
    Search,
    SearchKey,
    Section,
    Select,
    SeqRange,
    SequenceSet,
    SetQuota,
    StartTLS,
    Status,
    StoreCmd,
    StoreMode,
    Subscribe,
    Unselect,
)


class ProtocolError(Exception):
    """The client sent something the grammar does not allow: answered `tag BAD [code] text`.

    `tag` is None when the command's tag itself could not be read (answered `* BAD`).
    The peer is at fault; the session goes on.
    """

    def __init__(self, text: str, *, tag: str | None = None, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.tag = tag
        self.code = code


MAX_NESTING: Final = 64  # parentheses, NOT and OR in SEARCH; deeper is BAD, not a RecursionError
MAX_NUMBER: Final = 0xFFFFFFFF  # number / nz-number are 32-bit (RFC 9051 9)
MAX_NUMBER64: Final = 0x7FFFFFFFFFFFFFFF  # number64, mod-sequence-value (RFC 9051 9, RFC 7162 7)

# Character classes of RFC 9051 9, over octets. CHAR is 7-bit; CTL is 0x00-0x1f and 0x7f.
# atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_TAG: Final = re.compile(rb'[^\x00-\x20(){%*"\\+\x7f-\xff]+')  # ASTRING-CHAR except "+"
_ATOM: Final = re.compile(rb'[^\x00-\x20(){%*"\\\]\x7f-\xff]+')
_ASTRING_CHARS: Final = re.compile(rb'[^\x00-\x20(){%*"\\\x7f-\xff]+')  # ATOM-CHAR / "]"
_LIST_CHARS: Final = re.compile(rb'[^\x00-\x20(){"\\\x7f-\xff]+')  # + list-wildcards "%" "*"
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; 8-bit octets are UTF-8 (utf8-quoted, RFC 9051 9)
_QUOTED: Final = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE: Final = re.compile(rb'\\(["\\])')
_LITERAL: Final = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}")
_DIGITS: Final = re.compile(rb"[0-9]+")
_FETCH_NAME: Final = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD: Final = re.compile(rb"[A-Za-z.]+")
_STORE_ITEM: Final = re.compile(rb"[+-]?[A-Za-z.]+")
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_DATE: Final = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME: Final = re.compile(
    rb'"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTH_NAMES: Final = b"JANFEBMARAPRMAYJUNJULAUGSEPOCTNOVDEC"
_MONTHS: Final = {_MONTH_NAMES[i * 3 : i * 3 + 3]: i + 1 for i in range(12)}
SP, DQUOTE, LPAREN, RPAREN, LBRACKET, RBRACKET = 0x20, 0x22, 0x28, 0x29, 0x5B, 0x5D

# Flags are case-insensitive (RFC 9051 2.3.2); system flags come out in their canonical spelling.
_SYSTEM_FLAGS: Final = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_SPECIAL_USE: Final = {
    f.upper(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}

_SIMPLE_ATTS: Final = {
    "ENVELOPE": FetchKind.ENVELOPE,
    "FLAGS": FetchKind.FLAGS,
    "INTERNALDATE": FetchKind.INTERNALDATE,
    "RFC822": FetchKind.RFC822,
    "RFC822.HEADER": FetchKind.RFC822_HEADER,
    "RFC822.SIZE": FetchKind.RFC822_SIZE,
    "RFC822.TEXT": FetchKind.RFC822_TEXT,
    "BODY": FetchKind.BODY,
    "BODYSTRUCTURE": FetchKind.BODYSTRUCTURE,
    "UID": FetchKind.UID,
    "MODSEQ": FetchKind.MODSEQ,
}
_FAST: Final = (
    FetchAtt(kind=FetchKind.FLAGS),
    FetchAtt(kind=FetchKind.INTERNALDATE),
    FetchAtt(kind=FetchKind.RFC822_SIZE),
)
# The macros of RFC 9051 6.4.5; they stand alone, never inside a parenthesized list.
_MACROS: Final = {
    "FAST": _FAST,
    "ALL": (*_FAST, FetchAtt(kind=FetchKind.ENVELOPE)),
    "FULL": (*_FAST, FetchAtt(kind=FetchKind.ENVELOPE), FetchAtt(kind=FetchKind.BODY)),
}

_SEARCH_FLAGS: Final = frozenset(
    {"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN"}
    | {"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"}
)
_SEARCH_STRINGS: Final = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_SEARCH_DATES: Final = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
_SEARCH_WITH_ARGUMENT: Final = (
    _SEARCH_STRINGS
    | _SEARCH_DATES
    | {"LARGER", "SMALLER", "KEYWORD", "UNKEYWORD", "HEADER", "UID", "NOT", "OR", "MODSEQ"}
)
_SEARCH_RETURN: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})  # RFC 4731, RFC 5182
_STATUS_ITEMS: Final = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ"}
)
_LIST_SELECT: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})
_UTF8_CHARSETS: Final = frozenset({"UTF-8", "US-ASCII"})
_UID_COMMANDS: Final = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE"})


class _Cursor:
    """A position in one framed command, with the grammar's terminals as methods."""

    __slots__ = ("index", "line", "literals", "pos", "segments", "tag")

    def __init__(self, segments: Sequence[bytes], literals: Sequence[bytes | LiteralSink]) -> None:
        self.segments = segments
        self.literals = literals
        self.index = 0
        self.line = segments[0]
        self.pos = 0
        self.tag: str | None = None

    # -- position ----------------------------------------------------------------------------
    def fail(self, text: str) -> NoReturn:
        raise ProtocolError(text, tag=self.tag)

    def peek(self) -> int:
        """The next octet of the current segment, or -1 at its end."""
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def take(self, octet: int) -> bool:
        if self.peek() == octet:
            self.pos += 1
            return True
        return False

    def expect(self, octet: int, what: str) -> None:
        if not self.take(octet):
            self.fail(f"Expected {what}")

    def sp(self) -> None:
        self.expect(SP, "a space")

    def end(self) -> None:
        if self.pos < len(self.line) or self.index != len(self.segments) - 1:
            self.fail("Unexpected text at the end of the command")

    def match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        found = pattern.match(self.line, self.pos)
        if found is None:
            return None
        self.pos = found.end()
        return found.group()

    def peek_word(self) -> str:
        """The atom at the cursor, upper-cased, without moving; "" if there is none."""
        found = _ATOM.match(self.line, self.pos)
        return found.group().decode("ascii").upper() if found else ""

    # -- terminals ---------------------------------------------------------------------------
    def atom(self, what: str = "an atom") -> bytes:
        value = self.match(_ATOM)
        if value is None:
            self.fail(f"Expected {what}")
        return value

    def word(self, what: str = "a keyword") -> str:
        return self.atom(what).decode("ascii").upper()

    def number(self, *, limit: int = MAX_NUMBER, nonzero: bool = False) -> int:
        digits = self.match(_DIGITS)
        if digits is None:
            self.fail("Expected a number")
        if len(digits) > 20 or int(digits) > limit:
            self.fail("Number out of range")
        value = int(digits)
        if nonzero and value == 0:
            self.fail("Expected a non-zero number")
        return value

    def literal(self) -> tuple[bytes | LiteralSink, bool]:
        """A literal's octets (or their sink) and whether it was literal8; the marker must end
        its segment.

        Only APPEND data calls this at a "~": literal8 is for APPEND only (RFC 3516 4.2).
        """
        found = _LITERAL.fullmatch(self.line, self.pos)
        if found is None:
            self.fail("Invalid literal")
        binary = bool(found.group(1))
        if self.index >= len(self.literals):
            self.fail("Literal data missing")
        data = self.literals[self.index]
        if isinstance(data, bytes) and len(data) != int(found.group(2)):
            self.fail("Literal data missing")
        self.index += 1
        self.line = self.segments[self.index]
        self.pos = 0
        return data, binary

    def quoted(self) -> bytes:
        found = _QUOTED.match(self.line, self.pos)
        if found is None:
            self.fail("Invalid quoted string")
        self.pos = found.end()
        return _UNESCAPE.sub(rb"\1", found.group(1))

    def string(self) -> bytes:
        octet = self.peek()
        if octet == DQUOTE:
            return self.quoted()
        if octet == 0x7B:  # "{"
            data, _ = self.literal()
            if not isinstance(data, bytes):
                self.fail("String too long")  # only APPEND data is ever spooled
            if b"\x00" in data:
                self.fail("NUL in a string")  # literal = ... *CHAR8, CHAR8 excludes NUL
            return data
        self.fail("Expected a string")

    def astring(self) -> bytes:
        if self.peek() in (DQUOTE, 0x7B):
            return self.string()
        value = self.match(_ASTRING_CHARS)
        if value is None:
            self.fail("Expected an atom or a string")
        return value

    def nstring(self) -> bytes | None:
        if self.peek() in (DQUOTE, 0x7B):
            return self.string()
        if self.atom("NIL or a string").upper() != b"NIL":
            self.fail("Expected NIL or a string")
        return None

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("String is not valid UTF-8")

    def astring_text(self) -> str:
        return self.text(self.astring())

    def mailbox(self) -> str:
        name = self.astring_text()
        return "INBOX" if name.upper() == "INBOX" else name  # RFC 9051 5.1: INBOX ignores case

    def list_mailbox(self) -> str:
        if self.peek() in (DQUOTE, 0x7B):
            return self.text(self.string())
        value = self.match(_LIST_CHARS)
        if value is None:
            self.fail("Expected a mailbox pattern")
        return value.decode("ascii")

    def flag(self) -> str:
        if self.take(0x5C):  # "\": a system flag or flag-extension
            name = "\\" + self.atom("a flag").decode("ascii")
            return _SYSTEM_FLAGS.get(name.upper(), name)
        return self.atom("a flag").decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        self.expect(LPAREN, "a flag list")
        flags: list[str] = []
        if not self.take(RPAREN):
            flags.append(self.flag())
            while self.take(SP):
                flags.append(self.flag())
            self.expect(RPAREN, '")" after the flags')
        return tuple(flags)

    def words(self) -> tuple[str, ...]:
        """`"(" [atom *(SP atom)] ")"`, upper-cased."""
        self.expect(LPAREN, '"("')
        found: list[str] = []
        if not self.take(RPAREN):
            found.append(self.word())
            while self.take(SP):
                found.append(self.word())
            self.expect(RPAREN, '")"')
        return tuple(found)

    def seq_number(self) -> int | None:
        if self.take(0x2A):  # "*"
            return None
        return self.number(nonzero=True)

    def seqset(self) -> SequenceSet:
        if self.take(0x24):  # "$": the saved search result (RFC 5182 2.1)
            return SequenceSet(saved=True)
        ranges: list[SeqRange] = []
        while True:
            start = self.seq_number()
            end = self.seq_number() if self.take(0x3A) else start  # ":"
            ranges.append(SeqRange(start=start, end=end))
            if not self.take(0x2C):  # ","
                return SequenceSet(ranges=tuple(ranges))

    def date(self) -> datetime.date:
        """date = date-text / DQUOTE date-text DQUOTE (RFC 9051 9)."""
        quoted = self.take(DQUOTE)
        found = _DATE.match(self.line, self.pos)
        if found is None:
            self.fail("Invalid date")
        self.pos = found.end()
        if quoted:
            self.expect(DQUOTE, "a closing quote")
        day, month, year = found.groups()
        try:
            return datetime.date(int(year), _MONTHS[month.upper()], int(day))
        except (KeyError, ValueError):
            self.fail("Invalid date")

    def date_time(self) -> datetime.datetime:
        """`"25-Nov-2026 23:51:43 +0000"` (RFC 9051 9: date-time) → an aware datetime."""
        found = _DATE_TIME.match(self.line, self.pos)
        if found is None:
            self.fail("Invalid date-time")
        self.pos = found.end()
        day, month, year, hh, mm, ss, sign, zh, zm = found.groups()
        try:
            offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
            if int(zm) >= 60:
                raise ValueError
            zone = datetime.timezone(-offset if sign == b"-" else offset)
            # A leap second has no datetime; it is the last second of its minute.
            return datetime.datetime(
                int(year), _MONTHS[month.upper()], int(day.strip()), int(hh), int(mm),
                min(int(ss), 59), tzinfo=zone,
            )  # fmt: skip
        except (KeyError, ValueError, OverflowError):
            self.fail("Invalid date-time")


def _shown(word: str) -> str:
    """A client's word quoted back in an error: an atom (no controls), cut short."""
    return word if len(word) <= 40 else word[:40] + "..."


# -- commands ------------------------------------------------------------------------------------
_Handler = Callable[[_Cursor, str, str, bool], Command]


def _no_args(cls: type[Command]) -> _Handler:
    def handler(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
        cur.end()
        return cls(tag=tag, name=name)

    return handler


def _authenticate(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    mechanism = cur.word("a mechanism name")
    initial: bytes | None = None
    if cur.take(SP):  # SASL-IR (RFC 4959 7): base64, or "=" for an empty response
        raw = cur.match(_BASE64)
        if raw is None:
            raw = b"" if cur.take(0x3D) else cur.fail("Invalid initial response")
        try:
            initial = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            cur.fail("Invalid base64 in the initial response")
    cur.end()
    return Authenticate(tag=tag, name=name, mechanism=mechanism, initial=initial)


def _login(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    user = cur.astring_text()
    cur.sp()
    password = cur.astring_text()
    cur.end()
    return Login(tag=tag, name=name, user=user, password=password)


def _enable(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    capabilities: list[str] = []
    while cur.take(SP):  # "ENABLE" 1*(SP capability) (RFC 5161 3.1)
        capabilities.append(cur.word("a capability"))
    if not capabilities:
        cur.fail("ENABLE needs at least one capability")
    cur.end()
    return Enable(tag=tag, name=name, capabilities=tuple(capabilities))


def _select(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    mailbox = cur.mailbox()
    condstore = False
    if cur.take(SP):
        # Unknown select parameters are BAD (RFC 4466 2.1); mailfort knows CONDSTORE.
        for param in cur.words():
            if param != "CONDSTORE":
                cur.fail(f"Unknown select parameter {_shown(param)}")
            condstore = True
    cur.end()
    return Select(
        tag=tag, name=name, mailbox=mailbox, readonly=name == "EXAMINE", condstore=condstore
    )


def _create(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    mailbox = cur.mailbox()
    uses: list[str] = []
    if cur.take(SP):
        cur.expect(LPAREN, "create parameters")
        while True:
            # create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")" (RFC 6154 6)
            if cur.word("a create parameter") != "USE":
                cur.fail("Unknown create parameter")
            cur.sp()
            for flag in cur.flag_list():
                if not flag.startswith("\\"):
                    cur.fail("A special-use attribute starts with a backslash")
                uses.append(_SPECIAL_USE.get(flag.upper(), flag))
            if not cur.take(SP):
                break
        cur.expect(RPAREN, '")" after the create parameters')
    cur.end()
    return Create(tag=tag, name=name, mailbox=mailbox, special_use=tuple(uses))


def _one_mailbox(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.end()
    if name == "DELETE":
        return Delete(tag=tag, name=name, mailbox=mailbox)
    if name == "GETQUOTAROOT":
        return GetQuotaRoot(tag=tag, name=name, mailbox=mailbox)
    return Subscribe(tag=tag, name=name, mailbox=mailbox, subscribe=name == "SUBSCRIBE")


def _rename(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    new = cur.mailbox()
    cur.end()
    return Rename(tag=tag, name=name, old=old, new=new)


def _status_items(cur: _Cursor) -> tuple[str, ...]:
    items = cur.words()
    if not items:
        cur.fail("STATUS needs at least one item")
    for item in items:
        if item not in _STATUS_ITEMS:
            cur.fail(f"Unknown status item {_shown(item)}")
    return items


def _list(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    """RFC 5258 3: LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]."""
    cur.sp()
    select: tuple[str, ...] = ()
    extended = False
    if cur.peek() == LPAREN:
        extended = True
        select = cur.words()
        for option in select:
            if option not in _LIST_SELECT:
                cur.fail(f"Unknown LIST selection option {_shown(option)}")
        # RFC 5258 3: RECURSIVEMATCH only modifies another option; alone it is BAD.
        if "RECURSIVEMATCH" in select and not {"SUBSCRIBED", "SPECIAL-USE"} & set(select):
            cur.fail("RECURSIVEMATCH needs another selection option")
        cur.sp()
    reference = cur.astring_text()
    cur.sp()
    patterns: list[str] = []
    if cur.take(LPAREN):
        extended = True
        patterns.append(cur.list_mailbox())
        while cur.take(SP):
            patterns.append(cur.list_mailbox())
        cur.expect(RPAREN, '")" after the patterns')
    else:
        patterns.append(cur.list_mailbox())
    returns: list[str] = []
    status: tuple[str, ...] | None = None
    if cur.take(SP):
        if cur.word() != "RETURN":
            cur.fail("Expected RETURN")
        extended = True
        cur.sp()
        cur.expect(LPAREN, "return options")
        while not cur.take(RPAREN):
            if returns or status is not None:
                cur.sp()
            option = cur.word("a return option")
            if option == "STATUS":  # LIST-STATUS (RFC 5819 2)
                cur.sp()
                status = _status_items(cur)
            elif option in _LIST_RETURN:
                returns.append(option)
            else:
                cur.fail(f"Unknown LIST return option {_shown(option)}")
    cur.end()
    return ListCmd(
        tag=tag, name=name, reference=reference, patterns=tuple(patterns),
        select_options=select, return_options=tuple(returns), status_items=status,
        extended=extended,
    )  # fmt: skip


def _lsub(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    reference = cur.astring_text()
    cur.sp()
    pattern = cur.list_mailbox()
    cur.end()
    return ListCmd(tag=tag, name=name, reference=reference, patterns=(pattern,), lsub=True)


def _status(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    items = _status_items(cur)
    cur.end()
    return Status(tag=tag, name=name, mailbox=mailbox, items=items)


def _append(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    """RFC 3502 6: APPEND SP mailbox 1*append-message (several = MULTIAPPEND)."""
    cur.sp()
    mailbox = cur.mailbox()
    messages: list[AppendMessage] = []
    while cur.take(SP):
        flags: tuple[str, ...] = ()
        when: datetime.datetime | None = None
        if cur.peek() == LPAREN:
            flags = cur.flag_list()
            cur.sp()
        if cur.peek() == DQUOTE:
            when = cur.date_time()
            cur.sp()
        data, binary = cur.literal()  # NUL allowed: bytes are stored as sent
        messages.append(AppendMessage(flags=flags, internal_date=when, data=data, binary=binary))
    if not messages:
        cur.fail("APPEND needs a message literal")
    cur.end()
    return Append(tag=tag, name=name, mailbox=mailbox, messages=tuple(messages))


def _expunge(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    seqset = None
    if uid:  # UID EXPUNGE sequence-set (RFC 4315 2.1)
        cur.sp()
        seqset = cur.seqset()
    cur.end()
    return Expunge(tag=tag, name=name, uid=uid, seqset=seqset)


def _copy(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    seqset = cur.seqset()
    cur.sp()
    mailbox = cur.mailbox()
    cur.end()
    return Copy(tag=tag, name=name, uid=uid, seqset=seqset, mailbox=mailbox, move=name == "MOVE")


def _store(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    seqset = cur.seqset()
    cur.sp()
    unchanged_since: int | None = None
    if cur.take(LPAREN):  # store-modifiers (RFC 4466 2.5); UNCHANGEDSINCE (RFC 7162 3.1.3)
        if cur.word("a store modifier") != "UNCHANGEDSINCE":
            cur.fail("Unknown store modifier")
        cur.sp()
        unchanged_since = cur.number(limit=MAX_NUMBER64)  # mod-sequence-valzer: 0 allowed
        cur.expect(RPAREN, '")" after the store modifier')
        cur.sp()
    item = cur.match(_STORE_ITEM)
    if item is None:
        cur.fail("Expected FLAGS, +FLAGS or -FLAGS")
    mode = {b"+": StoreMode.ADD, b"-": StoreMode.REMOVE}.get(item[:1], StoreMode.REPLACE)
    base = item.lstrip(b"+-").upper()
    if base not in (b"FLAGS", b"FLAGS.SILENT"):
        cur.fail("Expected FLAGS, +FLAGS or -FLAGS")
    cur.sp()
    if cur.peek() == LPAREN:
        flags = cur.flag_list()
    else:  # flag *(SP flag), without parentheses
        bare = [cur.flag()]
        while cur.take(SP):
            bare.append(cur.flag())
        flags = tuple(bare)
    cur.end()
    return StoreCmd(
        tag=tag, name=name, uid=uid, seqset=seqset, mode=mode,
        silent=base.endswith(b".SILENT"), flags=flags, unchanged_since=unchanged_since,
    )  # fmt: skip


def _section(cur: _Cursor, *, binary: bool) -> Section:
    """section = "[" [section-spec] "]"; section-binary = "[" [section-part] "]" (RFC 9051 9)."""
    cur.expect(LBRACKET, '"["')
    part: list[int] = []
    text: str | None = None
    fields: list[str] = []
    trailing_dot = False  # "1.2." : a section-text must follow
    if 0x30 <= cur.peek() <= 0x39:
        part.append(cur.number(nonzero=True))
        while cur.take(0x2E):  # "."
            if not 0x30 <= cur.peek() <= 0x39:
                trailing_dot = True
                break
            part.append(cur.number(nonzero=True))
    if trailing_dot or (not part and cur.peek() != RBRACKET):
        if binary:
            cur.fail("BINARY takes a part number only")  # RFC 3516 4.2
        raw = cur.match(_SECTION_WORD)
        text = raw.decode("ascii").upper() if raw else ""
        allowed = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"}
        if part:
            allowed.add("MIME")  # MIME only for a part (RFC 9051 6.4.5)
        if text not in allowed:
            cur.fail("Invalid section")
        if text.startswith("HEADER.FIELDS"):
            cur.sp()
            cur.expect(LPAREN, "a header field list")
            fields.append(cur.astring_text().upper())
            while cur.take(SP):
                fields.append(cur.astring_text().upper())
            cur.expect(RPAREN, '")" after the header fields')
    cur.expect(RBRACKET, '"]"')
    return Section(part=tuple(part), text=text, fields=tuple(fields))


def _partial(cur: _Cursor) -> tuple[int, int] | None:
    """partial = "<" number64 "." nz-number64 ">" (RFC 9051 9)."""
    if not cur.take(0x3C):
        return None
    origin = cur.number(limit=MAX_NUMBER64)
    cur.expect(0x2E, '"." in the partial range')
    count = cur.number(limit=MAX_NUMBER64, nonzero=True)
    cur.expect(0x3E, '">"')
    return origin, count


def _fetch_att(cur: _Cursor) -> FetchAtt:
    raw = cur.match(_FETCH_NAME)
    if raw is None:
        cur.fail("Expected a FETCH attribute")
    name = raw.decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and cur.peek() == LBRACKET:
        section = _section(cur, binary=False)
        return FetchAtt(
            kind=FetchKind.BODY_SECTION, section=section, partial=_partial(cur),
            peek=name == "BODY.PEEK",
        )  # fmt: skip
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):  # RFC 3516 4.1
        section = _section(cur, binary=True)
        if name == "BINARY.SIZE":
            return FetchAtt(kind=FetchKind.BINARY_SIZE, section=section)
        return FetchAtt(
            kind=FetchKind.BINARY, section=section, partial=_partial(cur),
            peek=name == "BINARY.PEEK",
        )  # fmt: skip
    kind = _SIMPLE_ATTS.get(name)
    if kind is None:
        cur.fail(f"Unknown FETCH attribute {_shown(name)}")
    return FetchAtt(kind=kind)


def _fetch(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    seqset = cur.seqset()
    cur.sp()
    if cur.take(LPAREN):
        atts = [_fetch_att(cur)]
        while cur.take(SP):
            atts.append(_fetch_att(cur))
        cur.expect(RPAREN, '")" after the FETCH attributes')
    elif (macro := _MACROS.get(cur.peek_word())) is not None:
        cur.atom()
        atts = list(macro)
    else:
        atts = [_fetch_att(cur)]
    changed_since: int | None = None
    if cur.take(SP):  # fetch-modifiers (RFC 4466 2.4); CHANGEDSINCE (RFC 7162 3.1.4)
        cur.expect(LPAREN, "FETCH modifiers")
        while True:
            if cur.word("a FETCH modifier") != "CHANGEDSINCE" or changed_since is not None:
                cur.fail("Unknown or repeated FETCH modifier")
            cur.sp()
            changed_since = cur.number(limit=MAX_NUMBER64)
            if not cur.take(SP):
                break
        cur.expect(RPAREN, '")" after the FETCH modifiers')
    cur.end()
    return Fetch(
        tag=tag, name=name, uid=uid, seqset=seqset, atts=tuple(atts), changed_since=changed_since
    )


class _SearchParser:
    """search-key (RFC 9051 6.4.4, RFC 3501 6.4.4 for NEW/OLD/RECENT, RFC 7162 3.1.5 MODSEQ)."""

    def __init__(self, cur: _Cursor, charset: str | None) -> None:
        self.cur = cur
        self.utf8 = charset is None or charset.upper() in _UTF8_CHARSETS

    def string(self) -> str:
        raw = self.cur.astring()
        return self.cur.text(raw) if self.utf8 else raw.decode("latin-1")

    def key(self, depth: int) -> SearchKey:
        cur = self.cur
        if depth > MAX_NESTING:
            cur.fail("Search program nested too deeply")
        octet = cur.peek()
        if octet == LPAREN:
            cur.pos += 1
            children = [self.key(depth + 1)]
            while cur.take(SP):
                children.append(self.key(depth + 1))
            cur.expect(RPAREN, '")" in the search program')
            return SearchKey(name="AND", children=tuple(children))
        if 0x30 <= octet <= 0x39 or octet in (0x2A, 0x24):  # digit, "*", "$"
            return SearchKey(name="SEQSET", seqset=cur.seqset())
        name = cur.word("a search key")
        if name in _SEARCH_FLAGS:
            return SearchKey(name=name)
        if name not in _SEARCH_WITH_ARGUMENT:
            cur.fail(f"Unknown search key {_shown(name)}")
        cur.sp()
        if name in _SEARCH_STRINGS:
            return SearchKey(name=name, text=self.string())
        if name in _SEARCH_DATES:
            return SearchKey(name=name, date=cur.date())
        if name in ("LARGER", "SMALLER"):
            return SearchKey(name=name, number=cur.number(limit=MAX_NUMBER64))
        if name in ("KEYWORD", "UNKEYWORD"):
            return SearchKey(name=name, text=cur.flag())
        if name == "HEADER":
            header = self.string()
            cur.sp()
            return SearchKey(name=name, header=header, text=self.string())
        if name == "UID":
            return SearchKey(name=name, seqset=cur.seqset())
        if name == "NOT":
            return SearchKey(name=name, children=(self.key(depth + 1),))
        if name == "OR":
            left = self.key(depth + 1)
            cur.sp()
            return SearchKey(name=name, children=(left, self.key(depth + 1)))
        # MODSEQ; search-modseq-ext = SP entry-name SP entry-type-req (RFC 7162 7); mailfort keeps
        # one MODSEQ per message, so the per-flag entry is read and then ignored.
        if cur.peek() == DQUOTE:
            cur.quoted()
            cur.sp()
            if cur.word("an entry type") not in ("PRIV", "SHARED", "ALL"):
                cur.fail("Invalid MODSEQ entry type")
            cur.sp()
        return SearchKey(name=name, number=cur.number(limit=MAX_NUMBER64))


def _search(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    returns: tuple[str, ...] | None = None
    charset: str | None = None
    if cur.peek_word() == "RETURN":  # ESEARCH (RFC 4731 3)
        cur.atom()
        cur.sp()
        returns = cur.words()
        for option in returns:
            if option not in _SEARCH_RETURN:
                cur.fail(f"Unknown SEARCH return option {_shown(option)}")
        cur.sp()
    if cur.peek_word() == "CHARSET":
        cur.atom()
        cur.sp()
        charset = cur.text(cur.astring())
        cur.sp()
    program = _SearchParser(cur, charset)
    keys = [program.key(1)]
    while cur.take(SP):
        keys.append(program.key(1))
    cur.end()
    return Search(
        tag=tag, name=name, uid=uid, keys=SearchKey(name="AND", children=tuple(keys)),
        charset=charset, return_options=returns,
    )  # fmt: skip


def _id(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    """RFC 2971 4: "ID" SP ("(" #(string SP nstring) ")" / NIL)."""
    cur.sp()
    params: dict[str, str | None] | None = None
    if cur.take(LPAREN):
        params = {}
        if not cur.take(RPAREN):
            while True:
                key = cur.astring_text()  # a string by the RFC; atoms accepted
                cur.sp()
                value = cur.nstring()
                params[key] = None if value is None else cur.text(value)
                if not cur.take(SP):
                    break
            cur.expect(RPAREN, '")" after the ID parameters')
    elif cur.word("NIL or a list") != "NIL":
        cur.fail("Expected NIL or a parameter list")
    cur.end()
    return Id(tag=tag, name=name, params=params)


def _getquota(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    cur.sp()
    root = cur.astring_text()
    cur.end()
    return GetQuota(tag=tag, name=name, root=root)


def _setquota(cur: _Cursor, tag: str, name: str, uid: bool) -> Command:
    """RFC 9208 4.1.3: SETQUOTA quota-root SP "(" [resource-name SP number64 ...] ")"."""
    cur.sp()
    root = cur.astring_text()
    cur.sp()
    cur.expect(LPAREN, "a resource list")
    limits: list[tuple[str, int]] = []
    if not cur.take(RPAREN):
        while True:
            resource = cur.word("a resource name")
            cur.sp()
            limits.append((resource, cur.number(limit=MAX_NUMBER64)))
            if not cur.take(SP):
                break
        cur.expect(RPAREN, '")" after the resource list')
    cur.end()
    return SetQuota(tag=tag, name=name, root=root, limits=tuple(limits))


_HANDLERS: Final[dict[str, _Handler]] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTLS),
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "IDLE": _no_args(Idle),
    "NAMESPACE": _no_args(Namespace),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _one_mailbox,
    "SUBSCRIBE": _one_mailbox,
    "UNSUBSCRIBE": _one_mailbox,
    "GETQUOTAROOT": _one_mailbox,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "ID": _id,
    "GETQUOTA": _getquota,
    "SETQUOTA": _setquota,
}
COMMAND_NAMES: Final = frozenset(_HANDLERS) | {"UID"}


def _start(cur: _Cursor) -> tuple[str, str, bool]:
    """tag SP command-name, with "UID" folded into a flag: (tag, name, uid)."""
    raw_tag = cur.match(_TAG)
    if raw_tag is None or cur.peek() not in (SP, -1):
        cur.fail("Invalid tag")
    cur.tag = tag = raw_tag.decode("ascii")
    cur.sp()
    name = cur.word("a command name")
    uid = name == "UID"
    if uid:
        cur.sp()
        name = cur.word("a command name after UID")
        if name not in _UID_COMMANDS:
            cur.fail(f"UID {_shown(name)} is not a command")
    elif name not in _HANDLERS:
        cur.fail(f"Unknown command {_shown(name)}")
    return tag, name, uid


def tag_of(line: bytes) -> str | None:
    """The tag at the start of a command line, if it is a valid one (for error answers)."""
    found = _TAG.match(line)
    if found is None or (found.end() < len(line) and line[found.end()] != SP):
        return None
    return found.group().decode("ascii")


def check_prefix(line: bytes) -> str:
    """Validate the tag and command name of a first line; return the tag.

    Lets the reader refuse a command before a synchronizing literal is sent (RFC 9051 7.5).
    """
    cur = _Cursor((line,), ())
    tag, _, _ = _start(cur)
    return tag


def append_data(first: bytes, index: int) -> bool:
    """Whether literal `index` (from 0) of a command whose first line is `first` holds a message
    of APPEND (RFC 3502 6: append-data), so that the reader may spool it.

    In APPEND the only other literal can be the mailbox name, and that is the first one when
    the line goes on with "{" right after "APPEND " (flags are atoms, the date is quoted)."""
    cur = _Cursor((first,), ())
    try:
        _, name, _ = _start(cur)
    except ProtocolError:
        return False
    if name != "APPEND":
        return False
    return index > 0 or not (cur.take(SP) and cur.peek() in (0x7B, 0x7E))  # "{", "~"


def parse_command(
    segments: Sequence[bytes], literals: Sequence[bytes | LiteralSink] = ()
) -> Command:
    """One framed command → its `Command`; raises only `ProtocolError`.

    `segments` are the command's lines without CRLF; every one but the last ends in a literal
    marker whose octets are the matching entry of `literals`.
    """
    if not segments or len(segments) != len(literals) + 1:
        raise ProtocolError("Literal data missing", tag=tag_of(segments[0]) if segments else None)
    cur = _Cursor(segments, literals)
    tag, name, uid = _start(cur)
    return _HANDLERS[name](cur, tag, name, uid)


def parse_line(line: bytes) -> Command:
    """A command without literals, e.g. `b"a1 UID FETCH 1:* (FLAGS)"`."""
    return parse_command((line,))
