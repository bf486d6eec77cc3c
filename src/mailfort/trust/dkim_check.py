"""DKIM (RFC 6376) and ARC (RFC 8617) verification of an incoming message, with dkimpy.

dkimpy asks DNS itself, synchronously, through a `dnsfunc`. Here its keys are looked up first,
on the event loop, through the node's bounded, caching resolver (`trust/dns.py`): the selector
and domain of each signature and ARC set are read from the header fields, the key records are
fetched concurrently, and dkimpy gets a `dnsfunc` that only reads that table. So dkimpy never
touches the network.

dkimpy reads the header block only: each body hash (bh=) is checked first by `body_hash`, which
canonicalizes in 16 KB pieces, and dkimpy checks the header hash and the signature (`_BodyHashed`).
Its own body canonicalization runs whole-body regular expressions that take ~40 times the body in
memory (470 MB for a 10 MB message) and hold the interpreter lock throughout (0.65 s of stalled
sessions for 10 MB); in pieces it takes under a megabyte, and the lock is handed back between
them. The work runs on the loop for messages up to `INLINE` octets (about a millisecond: handing
it to a thread cost more, 0.45 ms of CPU per message in benchmarks/verify_ingest.py, in lock
handovers), on the caller's threads past that (`offload`: the node's CPU pool).

Bounds: at most `MAX_SIGNATURES` DKIM signatures are verified, `MAX_LARGE_SIGNATURES` on a
message past `LARGE` octets, as each kind of body hash (c=, a=, l=) reads the whole body again
(RFC 6376 6.1 lets a verifier limit them; the rest are not reported), and a chain of more than
`MAX_ARC_SETS` ARC sets is `arc=fail` unchecked (RFC 8617 4.2.1 caps it at 50; forwarding
chains are a few hops long).

Results per signature (RFC 8601 2.7.1): pass; fail (the signature or the body hash does not
verify); temperror (the key could not be fetched for now); permerror (a malformed signature, no
key, a key that cannot be used).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import dkim

from mailfort.trust.body_hash import body_hash, body_start
from mailfort.trust.dns import BadName, DnsFailure, TrustResolver, TxtTooLarge
from mailfort.trust.headers import Field

MAX_SIGNATURES: Final = 5
MAX_LARGE_SIGNATURES: Final = 2
INLINE: Final = 64 * 1024  # octets up to which dkimpy runs on the loop
LARGE: Final = 256 * 1024  # octets past which fewer signatures are checked
MAX_ARC_SETS: Final = 10
# dkimpy's smallest RSA key it accepts (RFC 8301 3.2: verifiers must not accept fewer bits).
MIN_KEY_BITS: Final = 1024

Offload = Callable[..., Awaitable[Any]]

_TEMPORARY: Final = "temporary"
_SELECTOR: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_DOMAIN: Final = re.compile(
    r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z0-9-]{1,63}$"
)


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str  # pass | fail | temperror | permerror
    domain: str  # d=, as written ("" when missing)
    selector: str  # s=
    algorithm: str  # a=
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Checked:
    dkim: tuple[DkimResult, ...]
    arc: str  # pass | fail | none


def tags(value: str) -> dict[str, str]:
    """A tag=value list (RFC 6376 3.2), tolerantly: the first of a repeated tag counts."""
    found: dict[str, str] = {}
    for part in value.split(";"):
        key, eq, text = part.partition("=")
        if eq:
            found.setdefault(key.strip().lower(), re.sub(r"\s+", "", text))
    return found


def key_name(signature: dict[str, str]) -> str | None:
    """Where the signature's key lives (RFC 6376 3.6.2.1), or None when d= or s= is unusable."""
    domain, selector = signature.get("d", ""), signature.get("s", "")
    if len(domain) > 253 or not _DOMAIN.match(domain) or not _SELECTOR.match(selector):
        return None
    name = f"{selector}._domainkey.{domain}".lower()
    return name if len(name) <= 253 else None


async def check(
    resolver: TrustResolver,
    message: bytes,
    header: list[Field],
    offload: Offload | None = None,
) -> Checked:
    """`offload` runs the checks of messages past `INLINE` octets (a thread pool); without
    it, and for small messages, they run here."""
    limit = MAX_LARGE_SIGNATURES if len(message) > LARGE else MAX_SIGNATURES
    signatures = [tags(f.value) for f in header if f.name == "dkim-signature"][:limit]
    arc_fields = [f for f in header if f.name in ("arc-seal", "arc-message-signature")]
    arc_sets = sum(1 for f in arc_fields if f.name == "arc-seal")
    names = {key_name(s) for s in signatures}
    check_arc = 0 < arc_sets <= MAX_ARC_SETS
    if check_arc:
        names |= {key_name(tags(f.value)) for f in arc_fields}
    wanted = sorted(n for n in names if n is not None)
    fetched = await asyncio.gather(*(_key(resolver, n) for n in wanted))
    keys = dict(zip(wanted, fetched, strict=True))
    if not signatures and not check_arc:
        return Checked((), "fail" if arc_sets else "none")
    if offload is None or len(message) <= INLINE:
        verified, arc = _verify(message, len(signatures), keys, check_arc)
    else:
        verified, arc = await offload(_verify, message, len(signatures), keys, check_arc)
    results = []
    for signature, (ok, error) in zip(signatures, verified, strict=True):
        name = key_name(signature)
        if ok:
            result = "pass"
        elif name is None:
            result, error = "permerror", "bad d= or s="
        elif keys.get(name) == _TEMPORARY:
            result = "temperror"
        elif error and not error.startswith("body hash mismatch"):
            result = "permerror"
        else:
            result = "fail"
        results.append(
            DkimResult(
                result,
                signature.get("d", "")[:253],
                signature.get("s", "")[:63],
                signature.get("a", "")[:30],
                error,
            )
        )
    return Checked(tuple(results), arc if check_arc else ("fail" if arc_sets else "none"))


async def _key(resolver: TrustResolver, name: str) -> bytes | str | None:
    """The key record's text, None when there is none, `_TEMPORARY` on a DNS failure."""
    try:
        answer = await resolver.txt(name)
    except DnsFailure:
        return _TEMPORARY
    except (TxtTooLarge, BadName):
        return None
    return answer.records[0].encode() if answer.records else None


class _BodyHashed:
    """dkimpy given the header block only (its parse and canonicalization of a body take ~40
    times the body's size in memory: 470 MB for 10 MB); the body hash (bh=) of each
    signature is checked here first, streamed in bounded memory (`body_hash`), and dkimpy
    checks the rest (the header hash and the signature) with bh= left out of what it checks.
    The same holds for ARC-Message-Signature; ARC-Seal has no body hash."""

    def __init__(self, message: bytes, start: int, **kw: Any) -> None:
        super().__init__(message[:start], **kw)  # type: ignore[call-arg]  # dkimpy, next in line
        self.whole = message
        self.start = start
        self.hashes: dict[tuple[bool, str, int | None], bytes] = {}  # one hash per kind

    def verify_sig(
        self, sig: dict[bytes, bytes], include_headers: Any, sig_header: Any, dnsfunc: Any
    ) -> Any:
        if b"bh" in sig:
            got = self._hash(sig)
            if got != re.sub(rb"\s+", b"", sig[b"bh"]):
                raise dkim.ValidationError(f"body hash mismatch (got {got.decode()})")
            sig = {tag: value for tag, value in sig.items() if tag != b"bh"}
        return super().verify_sig(sig, include_headers, sig_header, dnsfunc)  # type: ignore[misc]

    def _hash(self, sig: dict[bytes, bytes]) -> bytes:
        body = sig.get(b"c", b"simple/simple").partition(b"/")[2] or b"simple"
        algorithm = {b"rsa-sha256": "sha256", b"ed25519-sha256": "sha256", b"rsa-sha1": "sha1"}
        digest = algorithm.get(sig.get(b"a", b""))
        if body not in (b"simple", b"relaxed") or digest is None:
            raise dkim.ValidationError("unknown c= or a=")
        try:
            limit = int(sig[b"l"]) if b"l" in sig else None
        except ValueError:
            raise dkim.ValidationError("bad l=") from None
        if limit is not None and limit < 0:
            raise dkim.ValidationError("bad l=")
        kind = (body == b"relaxed", digest, limit)
        if kind not in self.hashes:
            relaxed, name, cut = kind
            self.hashes[kind] = body_hash(
                self.whole, self.start, relaxed=relaxed, algorithm=name, limit=cut
            )
        return self.hashes[kind]


class _Dkim(_BodyHashed, dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type information
    pass


class _Arc(_BodyHashed, dkim.ARC):  # type: ignore[misc]
    pass


def _verify(
    message: bytes, count: int, keys: dict[str, bytes | str | None], check_arc: bool
) -> tuple[list[tuple[bool, str]], str]:
    """dkimpy's verdicts, off the loop: (passed, error) per signature, and the ARC cv."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        found = keys.get(text.lower().rstrip("."))
        if found == _TEMPORARY:
            raise dkim.DnsTimeoutError(f"{text}: DNS failure")
        return found if isinstance(found, bytes) else None

    start = body_start(message)
    results: list[tuple[bool, str]] = []
    try:
        verifier = _Dkim(message, start, minkey=MIN_KEY_BITS)
    except Exception as exc:  # dkimpy's parser on a message it cannot read
        return [(False, f"unreadable message: {exc}")] * count, "fail"
    for index in range(count):
        try:
            results.append((bool(verifier.verify(idx=index, dnsfunc=dnsfunc)), ""))
        except Exception as exc:  # DKIMException and whatever garbage tags make dkimpy raise
            results.append((False, str(exc)[:200] or type(exc).__name__))
    arc = "none"
    if check_arc:
        try:
            sealed = _Arc(message, start, minkey=MIN_KEY_BITS)
            sealed.hashes = verifier.hashes  # the same body: hashes already made serve again
            cv, _, _ = sealed.verify(dnsfunc=dnsfunc)
            # None: a chain that an earlier hop ended; "none" for ARC fields present means
            # dkimpy found no instance it could read in them: either way not a valid chain.
            arc = cv.decode() if cv in (dkim.CV_Pass, dkim.CV_Fail) else "fail"
        except Exception:  # a malformed chain: it does not validate
            arc = "fail"
    return results, arc
