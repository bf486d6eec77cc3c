"""Where a mail client connects: host, port and TLS mode of each listener a customer uses.

Built from the listeners the node really runs (their bound ports), `hostname` and
`[dns.public_ports]` (the ports clients reach behind a firewall or load balancer that maps them):
the same host and ports as the RFC 6186 SRV records `mailfort dns records` prints. A listener
that is off is never offered. Order is preference, as every format here takes the first it can use:
IMAP before POP3, and implicit TLS before STARTTLS (RFC 8314 3.3: implicit TLS for submission
and 4.1/4.2 for IMAP and POP3 are to be preferred by clients and offered by providers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mailfort.config import Config
from mailfort.mail.address import AddressError, domain_of, normalize

MAX_ADDRESS = 320  # RFC 5321 4.5.3.1: a 64-octet local part, "@", a 255-octet domain

# (listener, protocol, implicit TLS), in the order clients should prefer them.
_INCOMING = (
    ("imaps", "imap", True),
    ("imap", "imap", False),
    ("pop3s", "pop3", True),
    ("pop3", "pop3", False),
)
_OUTGOING = (("submissions", "smtp", True), ("submission", "smtp", False))


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    protocol: str  # "imap", "pop3" or "smtp"
    host: str
    port: int
    implicit_tls: bool  # False: STARTTLS (STLS for POP3) on a plain connection


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    display_name: str
    host: str
    incoming: tuple[Server, ...]  # preferred first
    outgoing: tuple[Server, ...]  # preferred first

    def first(self, protocol: str) -> Server | None:
        """The preferred server for `protocol`, or None when no listener offers it."""
        for server in (*self.incoming, *self.outgoing):
            if server.protocol == protocol:
                return server
        return None


def client_settings(config: Config, bound: Mapping[str, int]) -> ClientSettings:
    """`bound`: the node's running listeners, name -> the port each is bound to."""
    host = config.hostname
    public = config.dns.public_ports

    def servers(table: tuple[tuple[str, str, bool], ...]) -> tuple[Server, ...]:
        found = []
        for listener, protocol, implicit in table:
            if listener not in bound:
                continue
            port = getattr(public, listener) or bound[listener]
            found.append(Server(protocol=protocol, host=host, port=port, implicit_tls=implicit))
        return tuple(found)

    return ClientSettings(
        display_name=config.status.provider_name,
        host=host,
        incoming=servers(_INCOMING),
        outgoing=servers(_OUTGOING),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDirectory:
    """What the client-setup answers need from the node: its settings (looked up per request,
    so they follow the listeners) and its local domains (config and store, cached by the
    node's `Directory`)."""

    settings: Callable[[], ClientSettings]
    local_domains: Callable[[], Awaitable[frozenset[str]]]
    # The node's TLS certificate and key files (PEM), which a profile is signed with; read at
    # each use, so a renewed certificate is used at once.
    tls_files: tuple[Path, Path] | None = None

    async def local_address(self, text: str) -> str | None:
        """`text` as a normalized address at one of our domains; None when it is no address
        or not ours. Raises StoreError when the domains cannot be read."""
        if len(text) > MAX_ADDRESS:
            return None
        try:
            address = normalize(text)
        except AddressError:
            return None
        return address if domain_of(address) in await self.local_domains() else None
