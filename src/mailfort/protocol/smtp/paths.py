"""The arguments of MAIL and RCPT: the path (RFC 5321 4.1.2) and the ESMTP parameters.

`parse_path` returns the address and the rest of the argument (the parameters), `None, None`
for a malformed path, `"", ""` for an empty argument. The everyday form, "<" dot-atom "@"
domain ">", is matched by one regular expression; anything else (quoted local parts, address
literals, comments, non-ASCII) goes to the standard library's RFC 5322 address parser, which
takes the same forms the server always took. The null reverse-path "<>" comes back as "<>".
That parser is imported on the first such path, not with this module: it imports
`email.utils`, which imports `socket` (for Message-IDs; it does no I/O here), and the core
promises not to pull the network modules in.

`parse_params` reads the parameters (RFC 5321 4.1.2 esmtp-param = keyword ["=" value]),
upper-cased as they always were: keyword → value, True for a keyword without one.
"""

from __future__ import annotations

import re
from typing import Final

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH: Final = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+([^ \t(].*))?\Z",
    re.DOTALL,
)
# RFC 1870 4: size-value = 1*20DIGIT (ASCII digits: str.isdigit() also takes "²" and "٣").
_SIZE: Final = re.compile(r"[0-9]{1,20}\Z")


def parse_path(arg: str) -> tuple[str | None, str | None]:
    if not arg:
        return "", ""
    match = _PLAIN_PATH.match(arg)
    if match is not None:
        return match[1], match[2] or ""
    from email._header_value_parser import get_addr_spec, get_angle_addr

    try:
        if arg.lstrip().startswith("<"):
            angle, rest = get_angle_addr(arg)
            address = angle.addr_spec
        else:
            spec, rest = get_addr_spec(arg)
            address = spec.addr_spec
    except Exception:
        # The parser raises HeaderParseError for most malformed paths, and IndexError or
        # AttributeError for some ("<@"): all of them are the client's mistake, a 553.
        return None, None
    return str(address), str(rest)


def parse_params(words: list[str]) -> dict[str, str | bool] | None:
    """Upper-cased parameter words → keyword: value (True without "="); None if malformed."""
    found: dict[str, str | bool] = {}
    for word in words:
        keyword, eq, value = word.partition("=")
        if not keyword.isalnum() or (eq and not value):
            return None
        found[keyword] = value if eq else True
    size = found.get("SIZE")
    if isinstance(size, str) and not _SIZE.match(size):
        return None
    return found


def strip_keyword(keyword: str, arg: str) -> str | None:
    """The argument after "FROM:" or "TO:" (any case), stripped; None if it does not start so."""
    if arg[: len(keyword)].upper() == keyword:
        return arg[len(keyword) :].strip()
    return None
