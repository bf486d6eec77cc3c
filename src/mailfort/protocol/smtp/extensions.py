"""SMTP service extensions: the one table the server's EHLO answer is built from, and the
reader of a server's EHLO answer for the client.

Each row says when the extension is offered, what its EHLO line carries, and how much room it
adds to the MAIL command line (RFC 5321 4.5.3.1.4 allows 512 octets; RFC 1870 4 adds 26 for
SIZE, RFC 6531 3.4 adds 10 for SMTPUTF8). The order of the rows is the order of the lines, the
same as the server always sent them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# RFC 5321 4.5.3.1.4: a command line, CRLF included, is at most 512 octets.
COMMAND_LINE: Final = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """What a listener can offer a session at the moment it says EHLO."""

    max_size: int  # 0: no SIZE limit to announce
    starttls: bool  # STARTTLS is possible here (a context, and not on TLS already)
    auth: tuple[str, ...]  # SASL mechanisms a session may use now; () offers no AUTH


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    keyword: str
    offered: Callable[[Offer], bool]
    parameter: Callable[[Offer], str] | None = None
    mail_room: int = 0  # octets it adds to MAIL's line limit (see the module docstring)


EXTENSIONS: Final = (
    # RFC 1870: the largest message taken; MAIL may declare SIZE=.
    Extension(
        keyword="SIZE",
        offered=lambda o: o.max_size > 0,
        parameter=lambda o: str(o.max_size),
        mail_room=26,
    ),
    Extension(keyword="8BITMIME", offered=lambda o: True),  # RFC 6152
    Extension(keyword="SMTPUTF8", offered=lambda o: True, mail_room=10),  # RFC 6531
    Extension(keyword="STARTTLS", offered=lambda o: o.starttls),  # RFC 3207
    # RFC 4954 4: the mechanisms, space-separated.
    Extension(keyword="AUTH", offered=lambda o: bool(o.auth), parameter=lambda o: " ".join(o.auth)),
    # RFC 2920: the session answers commands in order, whatever arrived at once.
    Extension(keyword="PIPELINING", offered=lambda o: True),
    # RFC 3030: BDAT, on every port (BINARYMIME is not offered: chunks hold text, as DATA).
    Extension(keyword="CHUNKING", offered=lambda o: True),
    Extension(keyword="ENHANCEDSTATUSCODES", offered=lambda o: True),  # RFC 2034
    Extension(keyword="HELP", offered=lambda o: True),
)


def ehlo_reply(hostname: str, offer: Offer) -> tuple[bytes, int]:
    """The EHLO answer (RFC 5321 4.1.1.1: a 250 line with our name, then one line per
    extension) with CRLFs, and the MAIL line limit that goes with it."""
    lines = [hostname]
    room = 0
    for ext in EXTENSIONS:
        if ext.offered(offer):
            lines.append(
                ext.keyword if ext.parameter is None else f"{ext.keyword} {ext.parameter(offer)}"
            )
            room += ext.mail_room
    reply = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
    return reply.encode(), COMMAND_LINE + room


# RFC 5321 4.1.1.1: ehlo-line = ehlo-keyword *( SP ehlo-param ), and
# ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
_KEYWORD: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?: (.*))?\Z")
# Some servers still announce their mechanisms as "AUTH=LOGIN PLAIN" (before RFC 4954).
_OLD_AUTH: Final = re.compile(r"AUTH=(.*)\Z", re.IGNORECASE)


def parse_ehlo(text: str) -> Mapping[str, str]:
    """A server's extensions from the text of its EHLO answer (the lines without their
    "250-"/"250 " prefixes, newline-separated): lower-case keyword → parameters ("" if none).
    The first line is the server's greeting, not an extension; lines that are no keyword are
    skipped; a keyword given twice has its last parameters."""
    found: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        line = line.strip()
        old = _OLD_AUTH.match(line)
        if old is not None:
            found["auth"] = old[1]
            continue
        match = _KEYWORD.match(line)
        if match is not None:
            found[match[1].lower()] = match[2] or ""
    return found
