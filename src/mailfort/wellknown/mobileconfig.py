"""Apple configuration profile (`.mobileconfig`) that sets up one user's mail account on iOS,
iPadOS and macOS (Apple's "Configuration Profile Reference", payload `com.apple.mail.managed`).

The profile names the user's address as login for the preferred incoming server (IMAP before
POP3, implicit TLS before STARTTLS: `client_settings`) and submission; it holds no password:
the device asks for it once when the profile is installed. Identifiers and UUIDs are derived
from the host and the address, so downloading it again gives the same profile, which replaces
the installed one instead of adding a second account.

`sign` wraps it in CMS SignedData with the node's TLS certificate (and the chain in its file),
so the device shows who issued it ("Verified" when the certificate chains to a CA it trusts, such
as an ACME one; "Not Verified" for the self-signed default). Without a usable certificate the
profile is served unsigned, which devices still install (shown as "Not Signed").
"""

from __future__ import annotations

import logging
import plistlib
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from mailfort.wellknown.client_settings import ClientSettings

log = logging.getLogger("mailfort.wellknown")

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


def sign(profile: bytes, cert_path: Path, key_path: Path) -> bytes | None:
    """`profile` as CMS SignedData (DER, content attached) with the node's TLS certificate, as
    Apple's devices read signed profiles; the rest of the PEM file (the chain) goes along so the
    device can build the path to a CA it trusts. None when the certificate or key cannot be
    used (a key type CMS signing has no support for, unreadable files): the caller serves the
    profile unsigned."""
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return None
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(profile)
            .add_signer(chain[0], key, hashes.SHA256())
        )
        for extra in chain[1:]:
            builder = builder.add_certificate(extra)
        return builder.sign(serialization.Encoding.DER, [])
    except (OSError, ValueError, TypeError) as exc:
        log.warning("event=profile_unsigned error=%s", exc)
        return None
