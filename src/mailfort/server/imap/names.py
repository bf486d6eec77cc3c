"""Mailbox names on the wire and in the store; LIST pattern matching (RFC 9051 6.3.9).

The store holds names as Unicode text with "/" as the hierarchy delimiter. On the wire a name is
modified UTF-7 (RFC 3501 5.1.3) unless the client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 6855,
RFC 9051 5.1), when it is plain UTF-8. INBOX is case-insensitive, and so is its prefix.
"""

from __future__ import annotations

import re

from mailfort.protocol.imap import mutf7

DELIMITER = "/"
MAX_NAME = 255


class NameError_(ValueError):
    """A name the client may not use; the text is the NO reply."""


def canonical(name: str) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIMITER:
        return "INBOX" + name[5:]
    return name


def decode(raw: str, utf8: bool) -> str:
    """Wire name → store name; raises NameError_ for an undecodable name."""
    if not utf8:
        try:
            raw = mutf7.decode(raw)
        except Exception as exc:  # the codec's own error: the name is malformed
            raise NameError_(f"invalid mailbox name encoding: {exc}") from None
    return canonical(raw)


def encode(name: str, utf8: bool) -> str:
    return name if utf8 else mutf7.encode(name)


def check_new(name: str) -> None:
    """Rules for names a client creates or renames to."""
    if not name or len(name) > MAX_NAME:
        raise NameError_("mailbox name empty or too long")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER) or DELIMITER * 2 in name:
        raise NameError_("mailbox name has an empty level")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        raise NameError_("mailbox name has control characters")
    if any(ch in "*%" for ch in name):
        raise NameError_("mailbox name may not contain * or %")


def pattern(reference: str, mailbox_pattern: str) -> re.Pattern[str]:
    """A regex for the LIST reference + pattern: `*` matches anything, `%` one level."""
    full = canonical(reference + mailbox_pattern)
    parts = []
    for ch in full:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def parents(name: str) -> list[str]:
    """ "a/b/c" → ["a", "a/b"]."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]
