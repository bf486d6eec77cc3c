"""Making DKIM keys: RSA 2048 and Ed25519 (RFC 8463), with selectors that say when they were made.

Keys are generated with `cryptography` (OpenSSL) and stored in the form dkimpy signs with
(`records.DkimKey`). RSA 2048: RFC 8301 3.2 requires at least 1024 and verifiers to handle up to
4096; 2048 still fits a DNS TXT record as one value of several strings. Both algorithms are made by
default because receivers that do not know Ed25519 yet ignore its signature (RFC 6376 6.1: an
unknown algorithm is no signature) and verify the RSA one.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Collection, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailfort.store.records import DKIM_ALGORITHMS, DkimKey, DkimState

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
RSA_BITS = 2048
# The selector's last letter tells the operator which key a DNS record holds.
_SUFFIX = {RSA: "r", ED25519: "e"}


def generate(
    domain: str, selector: str, algorithm: str, state: DkimState, now: float | None = None
) -> DkimKey:
    """A new key of `algorithm` for `domain` under `selector`."""
    if algorithm == RSA:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1: what dkimpy parses
            serialization.NoEncryption(),
        ).decode("ascii")
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private_text, public = pem, base64.b64encode(der).decode("ascii")
    elif algorithm == ED25519:
        seed = ed25519.Ed25519PrivateKey.generate()
        raw = seed.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        point = seed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        private_text = base64.b64encode(raw).decode("ascii")
        public = base64.b64encode(point).decode("ascii")
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r} (one of {DKIM_ALGORITHMS})")
    created = time.time() if now is None else now
    return DkimKey(
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key=private_text,
        public_key=public,
        state=state,
        created=created,
        activated_at=created if state is DkimState.ACTIVE else None,
    )


def selector_for(prefix: str, algorithm: str, now: float, taken: Collection[str]) -> str:
    """`<prefix><YYYYMM><r|e>` (mf202612r), with a letter before the suffix when that month's
    selector is taken already (mf202612br): a selector is never reused, since verifiers may have
    cached the record of the key it named before."""
    month = time.strftime("%Y%m", time.gmtime(now))
    suffix = _SUFFIX[algorithm]
    for extra in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        candidate = f"{prefix}{month}{extra}{suffix}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"every selector {prefix}{month}?{suffix} is taken; use another prefix")


def generate_set(
    domain: str,
    algorithms: Sequence[str],
    state: DkimState,
    *,
    prefix: str,
    taken: Collection[str],
    now: float | None = None,
) -> list[DkimKey]:
    """One new key per algorithm, under selectors not in `taken`."""
    when = time.time() if now is None else now
    used = set(taken)
    made = []
    for algorithm in algorithms:
        selector = selector_for(prefix, algorithm, when, used)
        used.add(selector)
        made.append(generate(domain, selector, algorithm, state, when))
    return made


def txt_strings(value: str, size: int = 255) -> list[str]:
    """A TXT value cut into character-strings of at most `size` octets (RFC 1035 3.3.14): an
    RSA 2048 record is ~410 characters, more than one string holds; verifiers join them."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def zone_line(key: DkimKey, ttl: int | None = None) -> str:
    """The key's record in zone-file syntax."""
    strings = " ".join(f'"{part}"' for part in txt_strings(key.txt_record))
    owner = f"{key.selector}._domainkey.{key.domain}."
    return f"{owner} {'' if ttl is None else f'{ttl} '}IN TXT ( {strings} )"
