"""Who a message says wrote and sent it: its originator fields (RFC 5322 3.6.2).

Submission holds the header `From:` and `Sender:` to what the logged-in user owns, so these must
be read the way a recipient's mail program will read them. Only the header block is looked at,
and at most `MAX_HEADER_BLOCK` octets of it. It must be plain RFC 5322 2.2 syntax, every line a
`name: value` field or a continuation, ended by CRLF, so that no program can find a field
boundary where this one did not: a bare LF or CR, `From :` with space before the colon (obsolete
syntax some readers take), or a line that is no field at all would let a lenient reader see a
second `From:` that a strict one skipped. The field values are parsed with the stdlib `email`
package's header registry (address lists, groups, comments, RFC 2047 encoded words in display
names, RFC 6532 UTF-8), and each address must appear in the field as written: one that only
comes out of decoding or of obsolete syntax (an encoded word or a comment inside it, which
RFC 2047 5 forbids) is refused rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import errors as email_errors
from email.policy import default as default_policy
from enum import Enum
from typing import Final

from mailfort.mail.address import AddressError, normalize

# The header block read at most. Submitted mail has a few KB of headers; Postfix keeps at most
# 100 KB of one header (header_size_limit). Parsing this much takes a few milliseconds.
MAX_HEADER_BLOCK: Final = 128 * 1024
# Characters of one From: or Sender: field. Address parsing costs ~5 us a character (measured
# with CPython 3.11's email._header_value_parser), so this bounds it at ~10 ms.
MAX_FIELD: Final = 2000

# RFC 5322 2.2: field-name = 1*ftext (printable US-ASCII except ":"), then ":" at once.
_FIELD_START: Final = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# Defects that do not make an address doubtful: obsolete but unambiguous syntax (a period in a
# display name, a route), and a UTF-8 local part (RFC 6532), which the parser flags either way.
_HARMLESS: Final = (email_errors.ObsoleteHeaderDefect, email_errors.NonASCIILocalPartDefect)


class Problem(Enum):
    """Why the originator fields cannot be checked; the caller answers each its own way."""

    HEADER_TOO_LARGE = "header block too large"
    MALFORMED_HEADER = "header block is not plain RFC 5322 fields"
    NO_FROM = "no From: field"
    FROM_TWICE = "more than one From: field"  # RFC 5322 3.6: exactly one
    SENDER_TWICE = "more than one Sender: field"  # RFC 5322 3.6: at most one
    BAD_FROM = "From: field cannot be parsed"
    BAD_SENDER = "Sender: field cannot be parsed"
    NEED_SENDER = "several From: addresses and no Sender:"  # RFC 5322 3.6.2


class OriginatorError(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Originators:
    """The normalized addresses of the From: field (one or more) and of Sender:, if any."""

    authors: tuple[str, ...]
    sender: str | None

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address the message claims to come from."""
        return self.authors if self.sender is None else (*self.authors, self.sender)


def header_fields(message: bytes) -> list[tuple[str, str]]:
    """The header fields of `message` as (lower-case name, unfolded value), in order.

    The block must be plain RFC 5322 2.2 syntax (see the module docstring); `message` need only
    hold its first MAX_HEADER_BLOCK + 4 octets."""
    if message.startswith(b"\r\n"):
        return []  # an empty line first: no header fields at all
    end = message.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK + 4)
    if end >= 0:
        block = message[:end]
    elif len(message) <= MAX_HEADER_BLOCK:
        block = message.removesuffix(b"\r\n")  # header fields only, no body
    else:
        raise OriginatorError(Problem.HEADER_TOO_LARGE)
    fields: list[tuple[str, list[bytes]]] = []
    for line in block.split(b"\r\n"):
        if b"\r" in line or b"\n" in line:
            raise OriginatorError(Problem.MALFORMED_HEADER)
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise OriginatorError(Problem.MALFORMED_HEADER)  # a continuation of nothing
            fields[-1][1].append(line)
            continue
        start = _FIELD_START.match(line)
        if start is None:
            raise OriginatorError(Problem.MALFORMED_HEADER)
        name = line[: start.end() - 1].decode("ascii").lower()
        fields.append((name, [line[start.end() :]]))
    # RFC 6532: field values may be UTF-8. Other 8-bit octets stay as surrogates, which
    # `normalize` refuses if they turn up in an address (a Subject may keep them).
    return [(name, b"".join(parts).decode("utf-8", "surrogateescape")) for name, parts in fields]


def originators(message: bytes) -> Originators:
    """The From: and Sender: addresses of `message`; raises OriginatorError when there is no
    single clear answer."""
    fields = header_fields(message)
    found = [value for name, value in fields if name == "from"]
    if not found:
        raise OriginatorError(Problem.NO_FROM)
    if len(found) > 1:
        raise OriginatorError(Problem.FROM_TWICE)
    authors = _addresses("From", found[0], Problem.BAD_FROM)
    if not authors:
        raise OriginatorError(Problem.BAD_FROM)  # an empty group names nobody
    senders = [value for name, value in fields if name == "sender"]
    if len(senders) > 1:
        raise OriginatorError(Problem.SENDER_TWICE)
    sender = None
    if senders:
        named = _addresses("Sender", senders[0], Problem.BAD_SENDER)
        if len(named) != 1:
            raise OriginatorError(Problem.BAD_SENDER)  # RFC 5322 3.6.2: one mailbox
        sender = named[0]
    if len(authors) > 1 and sender is None:
        raise OriginatorError(Problem.NEED_SENDER)
    return Originators(authors=authors, sender=sender)


def from_addresses(written: str) -> tuple[str, ...]:
    """The normalized addresses of one From: field value; OriginatorError when unparsable."""
    return _addresses("From", written, Problem.BAD_FROM)


def _addresses(name: str, written: str, problem: Problem) -> tuple[str, ...]:
    """The normalized addresses of one From: or Sender: field value, groups flattened."""
    if len(written) > MAX_FIELD:
        raise OriginatorError(problem)
    try:
        field = default_policy.header_factory(name, written)
        parsed = field.addresses
        defects = field.defects
    except Exception:
        # email's address parser has raised IndexError and RecursionError (deeply nested
        # comments) on hostile input: the client's doing, answered like any unparsable field.
        raise OriginatorError(problem) from None
    if any(not isinstance(d, _HARMLESS) for d in defects):
        raise OriginatorError(problem)
    lowered = written.lower()
    result: list[str] = []
    for address in parsed:
        spec = address.addr_spec
        if not address.username or not address.domain or spec.lower() not in lowered:
            raise OriginatorError(problem)
        try:
            result.append(normalize(spec))
        except AddressError:
            raise OriginatorError(problem) from None
    return tuple(result)
