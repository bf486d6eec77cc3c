"""Mailbox names on the wire and in the store; LIST pattern matching (RFC 9051 6.3.9).

The store holds names as Unicode text with "/" as the hierarchy delimiter. On the wire a name is
modified UTF-7 (RFC 3501 5.1.3) unless the client enabled UTF8=ACCEPT or IMAP4rev2 (RFC 6855,
RFC 9051 5.1), when it is plain UTF-8. INBOX is case-insensitive, and so is its prefix.

A LIST pattern is matched by simulating its automaton over the set of positions the pattern can
be at (a bitset in one int), never by a backtracking regex: with k wildcards a regex tries up to
n**k ways to split an n-character name, so that `LIST "" "********Q"` held the event loop for
minutes. The cost here is at most len(name) steps of a few int operations on a
len(pattern)-bit set, and both lengths are bounded.
"""

from __future__ import annotations

from mailfort.protocol.imap import mutf7

DELIMITER = "/"
MAX_NAME = 255
# Longest name or pattern accepted on the wire (modified UTF-7 takes up to 8/3 octets per
# character of a 255-character name): decoding, matching and storing are then bounded whatever
# a client sends in a 25 MB literal.
MAX_WIRE_NAME = 1024
# Longest reference + pattern, in characters: four times the longest name a client can create,
# so that no pattern a real client sends is refused, and one LIST step costs a 1025-bit set.
MAX_PATTERN = 4 * MAX_NAME


class NameError_(ValueError):
    """A name the client may not use; the text is the NO reply."""


def canonical(name: str) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIMITER:
        return "INBOX" + name[5:]
    return name


def decode(raw: str, utf8: bool) -> str:
    """Wire name → store name; raises NameError_ for an undecodable or overlong name."""
    if len(raw) > MAX_WIRE_NAME:
        raise NameError_("mailbox name too long")
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


class Pattern:
    """A LIST pattern (RFC 9051 6.3.9): `*` matches any characters, the delimiter included;
    `%` any characters but the delimiter; every other character itself."""

    __slots__ = ("_accept", "_literal", "_masks", "_min_length", "_prefix", "_star", "_wild")

    def __init__(self, text: str) -> None:
        tokens = _collapse(text)
        self._literal: str | None = None if "*" in tokens or "%" in tokens else "".join(tokens)
        prefix = []
        for token in tokens:
            if token in "*%":
                break
            prefix.append(token)
        self._prefix = "".join(prefix)
        self._min_length = sum(1 for token in tokens if token not in "*%")
        # Bit i set: the automaton is after the first i tokens. Token i is matched by the
        # transition from bit i to bit i + 1; a wildcard also stays at bit i, and may match
        # nothing (bit i implies bit i + 1). Runs of wildcards were collapsed, so that closure
        # takes one step.
        masks: dict[str, int] = {}
        star = wild = 0
        for i, token in enumerate(tokens):
            bit = 1 << i
            if token == "*":
                star |= bit
                wild |= bit
            elif token == "%":
                wild |= bit
            else:
                masks[token] = masks.get(token, 0) | bit
        self._masks = masks
        self._star = star
        self._wild = wild
        self._accept = 1 << len(tokens)

    def match(self, name: str) -> bool:
        if self._literal is not None:
            return name == self._literal
        if len(name) < self._min_length or not name.startswith(self._prefix):
            return False
        masks, star, wild = self._masks, self._star, self._wild
        states = 1 | (wild & 1) << 1
        for ch in name:
            stay = states & (star if ch == DELIMITER else wild)
            states = (states & masks.get(ch, 0)) << 1 | stay
            if not states:
                return False
            states |= (states & wild) << 1
        return bool(states & self._accept)


def _collapse(text: str) -> list[str]:
    """The pattern as tokens, each run of wildcards one: `*` if the run holds one (`%*` can
    cross the delimiter too), else `%`."""
    tokens: list[str] = []
    for ch in text:
        if ch in "*%" and tokens and tokens[-1] in "*%":
            if ch == "*":
                tokens[-1] = "*"
            continue
        tokens.append(ch)
    return tokens


def pattern(reference: str, mailbox_pattern: str) -> Pattern:
    """The matcher for a LIST reference + pattern; raises NameError_ for an overlong one."""
    full = canonical(reference + mailbox_pattern)
    if len(full) > MAX_PATTERN:
        raise NameError_("mailbox pattern too long")
    return Pattern(full)


def parents(name: str) -> list[str]:
    """ "a/b/c" → ["a", "a/b"]."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]
