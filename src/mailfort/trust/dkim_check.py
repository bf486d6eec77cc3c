"""DKIM (RFC 6376) and ARC (RFC 8617) verification of an incoming message, with dkimpy.

dkimpy asks DNS itself, synchronously, through a `dnsfunc`. Here its keys are looked up first,
on the event loop, through the node's bounded, caching resolver (`trust/dns.py`): the selector
and domain of each signature and ARC set are read from the header fields, the key records are
fetched concurrently, and dkimpy gets a `dnsfunc` that only reads that table. So dkimpy never
touches the network. Its work (hashing the body once per signature, RSA or Ed25519 arithmetic)
runs on the loop for messages up to `INLINE` octets (about a millisecond: handing it to a thread
cost more, 0.45 ms of CPU per message in benchmarks/verify_ingest.py, in lock handovers), on the
caller's threads (`offload`: the node's CPU pool) up to `LARGE`, and past that in a process.

Large messages (past `LARGE`) are verified in a worker process (`LargePool`), not a thread:
dkimpy canonicalizes a relaxed body with one regular expression over all of it, which holds the
interpreter lock throughout (1.8 s for 25 MB here): on a thread, that would stop the event loop
and every session with it. A worker process costs a copy of the message through a pipe instead.

Bounds: at most `MAX_SIGNATURES` DKIM signatures are verified, `MAX_LARGE_SIGNATURES` on a large
message, as each hashes the whole body again (RFC 6376 6.1 lets a verifier limit them; the rest
are not reported), and a chain of more than `MAX_ARC_SETS` ARC sets is
`arc=fail` unchecked (RFC 8617 4.2.1 caps it at 50; forwarding chains are a few hops long).

Results per signature (RFC 8601 2.7.1): pass; fail (the signature or the body hash does not
verify); temperror
(the key could not be fetched for now); permerror (a malformed signature, no key, a key that
cannot be used).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final

import dkim

from mailfort.trust.dns import BadName, DnsFailure, TrustResolver, TxtTooLarge
from mailfort.trust.headers import Field

log = logging.getLogger("mailfort.verify")

MAX_SIGNATURES: Final = 5
MAX_LARGE_SIGNATURES: Final = 2
INLINE: Final = 64 * 1024  # octets up to which dkimpy runs on the loop
LARGE: Final = 256 * 1024  # octets past which dkimpy runs in a worker process
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
    large: LargePool | None = None,
) -> Checked:
    """`offload` runs dkimpy for messages past `INLINE` octets (a thread pool), `large` for
    those past `LARGE` (a process pool); without them, and for small messages, it runs here."""
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
    runner = large if large is not None and len(message) > LARGE else offload
    if runner is None or len(message) <= INLINE:
        verified, arc = _verify(message, len(signatures), keys, check_arc)
    else:
        try:
            verified, arc = await runner(_verify, message, len(signatures), keys, check_arc)
        except (BrokenProcessPool, OSError) as exc:
            # Our own worker died (killed, out of memory): no verdict on the sender, for now.
            log.error("event=dkim_worker_failed error=%r", exc)
            keys = dict.fromkeys(keys, _TEMPORARY)
            verified, arc = [(False, "verifier unavailable")] * len(signatures), "fail"
    results = []
    for signature, (ok, error) in zip(signatures, verified, strict=True):
        name = key_name(signature)
        if ok:
            result = "pass"
        elif name is None:
            result, error = "permerror", "bad d= or s="
        elif keys.get(name) == _TEMPORARY or error == "verifier unavailable":
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


class LargePool:
    """Worker processes for dkimpy on large messages (see the module docstring); at most
    `workers` messages are handed over at once, the others wait on the loop."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        async with self._slots:
            if self._executor is None:
                # Spawned, not forked: a fork of the node would copy its threads' locks.
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context)
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor, fn, *args)
            except BrokenProcessPool:
                self.close()  # the next message gets a fresh worker
                raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


async def _key(resolver: TrustResolver, name: str) -> bytes | str | None:
    """The key record's text, None when there is none, `_TEMPORARY` on a DNS failure."""
    try:
        answer = await resolver.txt(name)
    except DnsFailure:
        return _TEMPORARY
    except (TxtTooLarge, BadName):
        return None
    return answer.records[0].encode() if answer.records else None


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

    results: list[tuple[bool, str]] = []
    try:
        verifier = dkim.DKIM(message, minkey=MIN_KEY_BITS)
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
            cv, _, _ = dkim.arc_verify(message, dnsfunc=dnsfunc, minkey=MIN_KEY_BITS)
            # None: a chain that an earlier hop ended; "none" for ARC fields present means
            # dkimpy found no instance it could read in them: either way not a valid chain.
            arc = cv.decode() if cv in (dkim.CV_Pass, dkim.CV_Fail) else "fail"
        except Exception:  # a malformed chain: it does not validate
            arc = "fail"
    return results, arc
