"""DKIM signatures (RFC 6376) on outgoing mail, RSA and Ed25519 (RFC 8463), with dkimpy.

dkimpy canonicalises the message, picks and hashes the header fields and writes the header; only
the RSA step is ours. dkimpy computes RSA in pure Python (`dkim.crypto`: ~6 ms of CPU per
signature with a 2048-bit key, measured with benchmarks/dkim_sign.py), where OpenSSL through
`cryptography` takes ~0.3 ms: at a few hundred messages a second that is a core. So `gen_header`
below is dkimpy's own, with its one RSA call made through `cryptography`; the digest it signs is
still dkimpy's, and every test verifies the result with dkimpy's verifier. Ed25519 stays dkimpy's
(through PyNaCl, already native).

Signed header fields: those a receiver shows or threads by, each signed as often as it occurs;
From once more than it occurs (oversigned: RFC 6376 8.15), so that nobody can add a second From
that a reader might show. A field absent from the message is not named, so that a mailing list
may still add its own List-Unsubscribe.

The body is hashed by `body_hash` in bounded memory and dkimpy signs the header block with that
`bh=`: its own body canonicalisation takes ~36 times the body's size at its peak.

Canonicalisation relaxed/relaxed: forwarders and list servers rewrap headers and trailing
whitespace; relaxed survives that, simple does not (RFC 6376 3.4).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from mailfort.store.records import DkimKey
from mailfort.trust.body_hash import body_start, relaxed_body_hash

log = logging.getLogger("mailfort.trust")

SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
CANONICALIZATION = (b"relaxed", b"relaxed")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A stored key made ready to sign with: the RSA key parsed once into OpenSSL's form."""

    domain: str
    selector: str
    algorithm: str
    private: bytes  # what dkimpy takes: PEM for RSA, base64 seed for Ed25519
    openssl: rsa.RSAPrivateKey | None

    @classmethod
    def load(cls, key: DkimKey) -> SigningKey:
        private = key.private_key.encode("ascii")
        openssl = None
        if key.algorithm == "rsa-sha256":
            loaded = serialization.load_pem_private_key(private, password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"DKIM key {key.selector} of {key.domain} is not an RSA key")
            openssl = loaded
        return cls(key.domain, key.selector, key.algorithm, private, openssl)


def _openssl_gen_header(
    signer: Any,
    fields: list[tuple[bytes, bytes]],
    include_headers: Sequence[bytes],
    canon_policy: Any,
    header_name: bytes,
    pk: Any,
    standardize: bool = False,
) -> bytes:
    """dkimpy's `DomainSigner.gen_header`, RSA through OpenSSL (module docstring)."""
    if standardize:
        lower = [(x, y.lower().replace(b" ", b"")) for (x, y) in fields if x != b"bh"]
        reg = [(x, y.replace(b" ", b"")) for (x, y) in fields if x == b"bh"]
        fields = sorted(lower + reg, key=lambda x: x[0])
    # dkimpy was given the header block only; the body hash is ours (`body_hash`).
    for i, (tag, _) in enumerate(fields):
        if tag == b"bh" and signer.body_hash is not None:
            fields[i] = (tag, signer.body_hash)
    header_value = b"; ".join(b"=".join(x) for x in fields)
    if not standardize:
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
    header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
    header = (header_name, b" " + header_value)
    h = signer.hasher()
    headers = canon_policy.canonicalize_headers(signer.headers)
    signer.signed_headers = dkim.hash_headers(
        h, canon_policy, headers, include_headers, header, dict(fields)
    )
    if signer.signature_algorithm == b"rsa-sha256":
        key: rsa.RSAPrivateKey = signer.openssl_key
        signature = key.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    else:
        signature = pk.sign(h.digest()).signature
    idx = next(i for i in range(len(fields)) if fields[i][0] == b"b")
    fields[idx] = (b"b", base64.b64encode(bytes(signature)))
    header_value = b"; ".join(b"=".join(x) for x in fields) + signer.linesep
    if not standardize:
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=signer.linesep)
    return bytes(header_value)


class _OpenSsl:
    """What dkimpy's signers are given here: the OpenSSL key for the RSA step and the body hash
    computed beforehand (`body_hash`), dkimpy itself seeing the header block only."""

    def __init__(
        self,
        message: bytes,
        openssl_key: rsa.RSAPrivateKey | None,
        body_hash: bytes | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[call-arg]  # dkimpy's signer, next in line
        self.openssl_key = openssl_key
        self.body_hash = body_hash

    gen_header = _openssl_gen_header


class OpenSslDkim(_OpenSsl, dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type information
    """dkimpy's DKIM signer, RSA through OpenSSL."""


class OpenSslArc(_OpenSsl, dkim.ARC):  # type: ignore[misc]
    """dkimpy's ARC sealer, RSA through OpenSSL."""


def header_names(message: bytes) -> list[bytes]:
    """The lower-case names of the message's header fields, in order (dkimpy's own parse, of
    the header block only: splitting a large body into lines costs more than the signature)."""
    headers, _ = dkim.rfc822_parse(message[: body_start(message)])
    return [name.lower() for name, _ in headers]


def to_sign(present: Sequence[bytes], wanted: Sequence[bytes] = SIGNED_HEADERS) -> list[bytes]:
    """`h=`: each wanted field as often as it occurs, From once more (module docstring)."""
    chosen: list[bytes] = []
    for name in wanted:
        chosen += [name] * present.count(name)
    return [*chosen, b"from"]


def sign(message: bytes, keys: Sequence[SigningKey]) -> bytes:
    """DKIM-Signature fields, one per key, to put on top of `message` (each signs the message as
    it is, not the other signatures). Empty when the message cannot be signed (no From field, or
    dkimpy cannot parse it): the mail leaves unsigned rather than not at all."""
    if not keys:
        return b""
    try:
        include = to_sign(header_names(message))
        if include.count(b"from") < 2:
            return b""  # no From: a message without one signs nothing a receiver can align
        fields = []
        # One parse of the header block for every key (dkimpy's `sign` leaves it as it was),
        # one body hash for all (relaxed body canonicalisation: `body_hash`).
        start = body_start(message)
        signer = OpenSslDkim(message[:start], None, relaxed_body_hash(message, start))
        for key in keys:
            signer.openssl_key = key.openssl
            fields.append(
                signer.sign(
                    key.selector.encode("ascii"),
                    key.domain.encode("ascii"),
                    key.private,
                    signature_algorithm=key.algorithm.encode("ascii"),
                    canonicalize=CANONICALIZATION,
                    include_headers=include,
                )
            )
        return b"".join(fields)
    except dkim.DKIMException as exc:
        log.warning("event=dkim_sign_failed error=%s", exc)
        return b""
