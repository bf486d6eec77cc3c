"""Apple configuration profile (`.mobileconfig`) that sets up one user's mail account on iOS,
iPadOS and macOS (Apple's "Configuration Profile Reference", payload `com.apple.mail.managed`).

The profile names the user's address as login for the preferred incoming server (IMAP before
POP3, implicit TLS before STARTTLS: `client_settings`) and submission; it holds no password:
the device asks for it once when the profile is installed. Identifiers and UUIDs are derived
from the host and the address, so downloading it again gives the same profile, which replaces
the installed one instead of adding a second account.

The profile is not signed: the device shows it as "Not Signed" but installs it. Signing (CMS with
the node's TLS certificate) is left for later; the download is over the same TLS as the login.
"""

from __future__ import annotations

import plistlib
import uuid
from typing import Any

from mailfort.wellknown.client_settings import ClientSettings

MEDIA_TYPE = "application/x-apple-aspen-config"
_NAMESPACE = uuid.UUID("6f1b8a1e-2d0c-5c7e-9a55-3b1f6c0e4d21")  # mailfort profiles


def _reverse(host: str) -> str:
    return ".".join(reversed(host.split(".")))


def profile(settings: ClientSettings, address: str) -> bytes | None:
    """The profile for `address`; None when the node offers no incoming or no outgoing server."""
    incoming = settings.first("imap") or settings.first("pop3")
    outgoing = settings.first("smtp")
    if incoming is None or outgoing is None:
        return None
    base = f"{_reverse(settings.host)}.mailfort.{uuid.uuid5(_NAMESPACE, address)}"
    mail: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.mail",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"mail:{settings.host}:{address}")).upper(),
        "PayloadDisplayName": f"{settings.display_name} mail",
        "EmailAccountDescription": f"{settings.display_name} ({address})",
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        # Apple's UseSSL covers implicit TLS and STARTTLS alike (it tries both on the port).
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    document = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": base,
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"profile:{settings.host}:{address}")).upper(),
        "PayloadDisplayName": f"{settings.display_name}: {address}",
        "PayloadDescription": f"Sets up the mail account {address}.",
        "PayloadOrganization": settings.display_name,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail],
    }
    return plistlib.dumps(document, fmt=plistlib.FMT_XML)


def filename(address: str) -> str:
    """A download name without characters a browser or a file system would object to."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in address)
    return f"{safe}.mobileconfig"
