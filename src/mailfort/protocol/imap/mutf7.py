"""Modified UTF-7 mailbox names (RFC 3501 5.1.3), the wire form unless UTF-8 was enabled.

Printable US-ASCII (0x20-0x7e) stands for itself, except "&", written "&-". Every other
character is written as UTF-16BE in a modified BASE64 run (RFC 2045 alphabet with "," for "/",
no padding) between "&" and "-". `decode` is strict, so that one name has one spelling:
anything else is a `ProtocolError` (the server answers BAD or NO).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from mailfort.protocol.imap.parser import ProtocolError

_RUN: Final = re.compile(r"[A-Za-z0-9+,]*")


def encode(name: str) -> str:
    """Unicode name → modified UTF-7; raises ValueError for lone surrogates (not text)."""
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if " " <= ch <= "~":
            if pending:
                out.append(_encode_run("".join(pending)))
                pending.clear()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append(_encode_run("".join(pending)))
    return "".join(out)


def _encode_run(text: str) -> str:
    try:
        data = text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise ValueError("mailbox name is not valid Unicode text") from None
    b64 = base64.b64encode(data).rstrip(b"=").replace(b"/", b",")
    return "&" + b64.decode("ascii") + "-"


def decode(name: str) -> str:
    """Modified UTF-7 → Unicode; raises ProtocolError for anything but the canonical form."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if not " " <= ch <= "~":
            raise ProtocolError("Mailbox name is not modified UTF-7: 8-bit or control character")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ProtocolError("Mailbox name is not modified UTF-7: unterminated '&'")
        if end == i + 1:
            out.append("&")
        else:
            out.append(_decode_run(name[i + 1 : end]))
        i = end + 1
    return "".join(out)


def _decode_run(run: str) -> str:
    if not _RUN.fullmatch(run) or len(run) % 4 == 1:
        raise ProtocolError("Mailbox name is not modified UTF-7: bad BASE64")
    padded = run.replace(",", "/") + "=" * (-len(run) % 4)
    try:
        data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("Mailbox name is not modified UTF-7: bad BASE64") from None
    # Unused bits must be zero, and whole UTF-16 code units only: one spelling per name.
    if len(data) % 2 or base64.b64encode(data).rstrip(b"=").decode("ascii") != run.replace(
        ",", "/"
    ):
        raise ProtocolError("Mailbox name is not modified UTF-7: bad BASE64 padding")
    try:
        text = data.decode("utf-16-be")  # strict: a lone surrogate is an error
    except UnicodeDecodeError:
        raise ProtocolError("Mailbox name is not modified UTF-7: bad UTF-16") from None
    # RFC 3501 5.1.3: BASE64 MUST NOT represent a printable US-ASCII character.
    if any(" " <= ch <= "~" for ch in text):
        raise ProtocolError("Mailbox name is not modified UTF-7: encoded ASCII")
    return text
