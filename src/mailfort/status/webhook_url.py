"""Where a webhook may point: a URL's syntax, and the addresses its host resolves to.

Anyone may subscribe over the public API, and the node then sends requests to the URL from
inside the provider's network. A URL whose host is, or resolves to, a loopback, private,
link-local or otherwise non-public address would let a stranger reach what only the node can
(a database, a cloud metadata service). Host text has too many spellings of one address to
check it by parsing (`2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` are all 127.0.0.1 to
`inet_aton`; `::ffff:127.0.0.1` and `64:ff9b::7f00:1` wrap it in IPv6; a name can resolve to it),
so the host is resolved once and every address it gives is checked (`resolve`); the caller then
connects to one of exactly those addresses (no second lookup a rebinding DNS server could
answer differently). Numeric spellings other than the canonical ones are refused as malformed
as well, so that what a subscriber wrote is what the node connects to.

Syntax (`parse`) needs no network and raises `BadUrl`; `resolve` raises `Refused` for a
non-public address (trying again would not change that) and `OSError` when the name does not
resolve (it may later).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as text (getaddrinfo's sockaddr[0]).
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL: Final = 2048
_MAX_NAME: Final = 253  # RFC 1035 §2.3.4, without the trailing dot
_MAX_LABEL: Final = 63
_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class BadUrl(ValueError):
    """The URL is not one a webhook can use; the message is shown to the subscriber."""


class Refused(ValueError):
    """Not sent, on purpose: the host is not public. Trying again would not change that."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL, split into what a request needs."""

    url: str
    scheme: str  # "http" or "https"
    host: str  # lowercase ASCII name without a trailing dot, or an IP address without brackets
    port: int
    path: str  # path and query, at least "/"; the fragment is never sent

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def authority(self) -> str:
        """The Host header (RFC 9110 §7.2): the port only when it is not the scheme's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return host + port

    def with_query(self, params: dict[str, str]) -> str:
        """The path with `params` added to its query (a WebSub verification request)."""
        extra = urllib.parse.urlencode(params)
        return f"{self.path}{'&' if '?' in self.path else '?'}{extra}"


def parse(url: object) -> Target:
    """`url` as a `Target`: an absolute http(s) URL without credentials whose host is a DNS
    name or an IP address in its canonical spelling; else `BadUrl`."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise BadUrl(f"url: expected an http or https URL of at most {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise BadUrl("url: must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadUrl("url: not a valid URL (bad host or port)") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BadUrl("url: expected an http or https URL with a host")
    if "@" in parts.netloc:
        raise BadUrl("url: must not contain credentials")
    if port == 0:
        raise BadUrl("url: bad port")
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    host = _host(parts.hostname, bracketed=bracketed)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port or _DEFAULT_PORTS[parts.scheme],
        path=path,
    )


def _host(raw: str, *, bracketed: bool) -> str:
    if "%" in raw:
        raise BadUrl("url: not a valid host name")  # zone ids name a local interface
    if bracketed:
        # RFC 3986 §3.2.2: only an IPv6 literal goes in brackets.
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise BadUrl("url: expected an IPv6 address in brackets") from None
    try:
        name = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise BadUrl("url: not a valid host name") from None
    name = name.removesuffix(".")
    try:
        return str(ipaddress.IPv4Address(name))  # the canonical dotted quad
    except ValueError:
        pass
    if _inet_aton_accepts(name):
        raise BadUrl("url: write an IPv4 address as four decimal numbers (a.b.c.d)")
    labels = name.split(".")
    if (
        not name
        or len(name) > _MAX_NAME
        or any(
            not 0 < len(label) <= _MAX_LABEL
            or not _LABEL_CHARS.issuperset(label)
            or label.startswith("-")
            or label.endswith("-")
            for label in labels
        )
    ):
        raise BadUrl("url: not a valid host name")
    if labels[-1].isdigit():
        # RFC 3696 §2: a top-level domain is never all digits; such a "name" is an address.
        raise BadUrl("url: write an IPv4 address as four decimal numbers (a.b.c.d)")
    return name


def _inet_aton_accepts(name: str) -> bool:
    """The C library would read `name` as an IPv4 address (hex, octal, or fewer parts)."""
    try:
        socket.inet_aton(name)
    except (OSError, ValueError):
        return False
    return True


# Special-purpose ranges (IANA registries, RFC 6890 and later) that Python 3.11's `is_global`
# does not all know; an address in any of them is not a public destination.
_V4_SPECIAL: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_V6_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_V6_SPECIAL: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in ("2001::/23", "2001:db8::/32", "3fff::/20")  # protocol assignments, documentation
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address, looking through IPv6 forms that carry
    an IPv4 address (mapped, NAT64, 6to4) to the address they carry."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address.scope_id or address not in _V6_GLOBAL_UNICAST:
            return False
        return address.is_global and not any(address in n for n in _V6_SPECIAL)
    return address.is_global and not any(address in n for n in _V4_SPECIAL)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def resolve(target: Target, resolver: Resolver, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for `target`, each of them public unless `allow_private`:
    `Refused` if any is not (a name with one private address among public ones is refused as
    a whole, since the caller would not know which one a client library picks), `OSError`
    when the host does not resolve."""
    literal = target.literal
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        if not allow_private and (target.host == "localhost" or target.host.endswith(".localhost")):
            # RFC 6761 §6.3: such names are loopback whatever a resolver says.
            raise Refused(f"{target.host!r} is not a public host")
        try:
            found = await resolver(target.host, target.port)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {target.host!r}: {exc.strerror}") from None
        addresses = []
        for text in found:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise OSError(f"cannot resolve {target.host!r}: no address")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise Refused(f"{target.host!r} is not a public host ({address})")
    return addresses
