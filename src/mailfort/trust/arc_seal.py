"""ARC sealing of forwarded mail (RFC 8617), with dkimpy's `ARC` signer.

When our alias forwards a message, the next hop sees SPF fail for the original sender (we are not
its server) and perhaps a DKIM signature broken by nothing we did. The ARC set we add tells it
what our MX found when the message arrived: the ARC-Authentication-Results copy the results of
our own Authentication-Results header (the one whose authserv-id is this node's `hostname`,
added at the MX), the ARC-Message-Signature signs the message as we forward it, and the ARC-Seal
signs the chain, its `cv=` being the `arc=` result our MX found (none for the first set).

Without our Authentication-Results header there is nothing to attest, and dkimpy adds no set:
the message leaves unsealed (an ARC set claiming results nobody checked would be worse than
none). The seal uses RSA (RFC 8617 only defines rsa-sha256) through OpenSSL, as DKIM does
(`dkim_sign`).
"""

from __future__ import annotations

import logging

import dkim

from mailfort.trust.body_hash import body_start, relaxed_body_hash
from mailfort.trust.dkim_sign import SIGNED_HEADERS, OpenSslArc, SigningKey, header_names

log = logging.getLogger("mailfort.trust")

# The AMS signs what a DKIM signature would, plus the DKIM signatures already on the message:
# a receiver that trusts our seal can then trust them as we saw them.
ARC_SIGNED = (*SIGNED_HEADERS, b"dkim-signature")


def seal(message: bytes, key: SigningKey, authserv_id: str) -> bytes:
    """The ARC set (three header fields) to put on top of `message`; empty when there is nothing
    to seal (no Authentication-Results of ours, a chain past 50 instances, or a message dkimpy
    cannot parse)."""
    if key.algorithm != "rsa-sha256":
        raise ValueError("ARC seals with rsa-sha256 only (RFC 8617 4.1.3)")
    try:
        present = header_names(message)
        include = [name for name in ARC_SIGNED if name in present]
        if b"from" not in include:
            return b""
        start = body_start(message)
        sealer = OpenSslArc(
            message[:start],
            key.openssl,
            relaxed_body_hash(message, start),
            signature_algorithm=b"rsa-sha256",
        )
        # dkimpy refuses to sign a header on its DKIM list of fields not to sign, DKIM-Signature
        # among them (RFC 6376 5.4 advice for DKIM signers): with it in ARC_SIGNED, every
        # DKIM-signed message (most forwarded mail) was left unsealed.
        sealer.should_not_sign.discard(b"dkim-signature")
        fields = sealer.sign(
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private,
            authserv_id.encode("ascii"),
            include_headers=include,
        )
    except dkim.DKIMException as exc:
        log.warning("event=arc_seal_failed error=%s", exc)
        return b""
    return b"".join(fields)
