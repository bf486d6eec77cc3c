"""One SMTP transaction's envelope (RFC 5321 2.3.1): the sender, the MAIL parameters, and the
recipients the server accepted, each with the route its policy found for it.

The route's type is the server's (`Recipient[Route]`): the core carries it from RCPT to the end
of DATA without looking at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

Route = TypeVar("Route")


@dataclass(frozen=True, slots=True, kw_only=True)
class MailParams:
    """MAIL's ESMTP parameters, as the core checked them."""

    size: int = 0  # RFC 1870: the size the client declared; 0 when it declared none
    body: str = "7BIT"  # RFC 6152: "7BIT" or "8BITMIME"
    smtputf8: bool = False  # RFC 6531 3.4
    words: tuple[str, ...] = ()  # the parameters as sent, upper-cased


@dataclass(frozen=True, slots=True)
class Recipient(Generic[Route]):
    address: str  # as the server records it (normalized, or the postmaster it stands for)
    route: Route  # where its mail goes


@dataclass(slots=True, kw_only=True)
class Envelope(Generic[Route]):
    sender: str  # "" for the null reverse-path "<>" (RFC 5321 4.5.5)
    params: MailParams
    recipients: list[Recipient[Route]] = field(default_factory=list)
