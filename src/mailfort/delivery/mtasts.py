"""MTA-STS for outgoing mail (RFC 8461): which MX hosts a domain allows and whether TLS must hold.

A domain announces a policy with a TXT record at `_mta-sts.<domain>` ("v=STSv1; id=..."); the
policy itself is fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt` with a certificate
verified for that name (RFC 8461 3.3): HTTP 200 only, no redirects followed, `text/plain`, at most
`MAX_POLICY_BYTES`, the whole exchange under one deadline (a server that trickles its answer is
cut off at it, not per read).

Policies are cached in memory on each node, keyed by domain and bounded in number (`MAX_CACHED`).
A cached policy is used while its `max_age` lasts and its TXT id is unchanged; a changed id or an
expired policy is fetched again, and a failed refresh keeps the cached one (RFC 8461 5.1), so a
policy server that is down (or an attacker blocking it) cannot switch enforcement off. A failed
fetch with nothing cached is remembered for `FAILURE_BACKOFF` seconds, so a slow policy server
costs one fetch per period, not one per message. One fetch per domain runs at a time; concurrent
deliveries wait for its result.

Why per node and not in the store: a policy is a public, idempotent fetch; N nodes fetching it once
a week each costs the policy host N small requests, while a shared cache would add a store write
per refresh and a read per delivery. Kept simple; the store can hold it later if clusters grow.

The HTTP framing is h11's (a sans-IO HTTP/1.1 implementation); the TLS is the stdlib's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h11

from mailfort import __version__
from mailfort.delivery.mx import DnsError, MxResolver

log = logging.getLogger("mailfort.delivery")

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: "SHOULD NOT exceed 64 KB"
MAX_AGE_LIMIT = 31557600  # RFC 8461 3.2: at most one year
MAX_CACHED = 10_000  # domains whose policies one node remembers
MAX_MX_PATTERNS = 100  # more in one policy is no policy anyone means
MAX_TXT_BYTES = 4096  # a longer `_mta-sts` record is garbage, not a policy pointer
FAILURE_BACKOFF = 300.0  # seconds a failed fetch with nothing cached is not tried again
_READ = 16 * 1024
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 3.1 sts-id
_USER_AGENT = f"mailfort/{__version__} (MTA-STS)"


class Mode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


class PolicyError(Exception):
    """A policy that could not be fetched or is not one; `kind` is its TLS-RPT result type."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


FETCH_ERROR = "sts-policy-fetch-error"
POLICY_INVALID = "sts-policy-invalid"
WEBPKI_INVALID = "sts-webpki-invalid"


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]  # lower-case patterns, "*.example.org" matching one leftmost label
    max_age: int
    text: str  # the policy as served, for TLS-RPT's policy-string

    def allows(self, host: str) -> bool:
        """Whether MX `host` matches one of the policy's patterns (RFC 8461 4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def parse_txt(strings: Iterable[str]) -> str | None:
    """The policy id of a `_mta-sts` TXT RRset, or None when there is not exactly one valid
    STSv1 record (RFC 8461 3.1: several records mean none)."""
    found: list[str] = []
    for text in strings:
        if not text.startswith("v=STSv1"):
            continue
        fields: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        ident = fields.get("id", "")
        if fields.get("v") != "STSv1" or not _ID.match(ident):
            return None
        found.append(ident)
    return found[0] if len(found) == 1 else None


def parse_policy(text: str) -> Policy:
    """The policy body (RFC 8461 3.2). Raises PolicyError(sts-policy-invalid)."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(POLICY_INVALID, f"not a policy line: {line[:80]!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            if len(mx) >= MAX_MX_PATTERNS:
                raise PolicyError(POLICY_INVALID, f"more than {MAX_MX_PATTERNS} mx lines")
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)  # unknown keys are ignored (RFC 8461 3.2)
    if fields.get("version") != "STSv1":
        raise PolicyError(POLICY_INVALID, "version is not STSv1")
    try:
        mode = Mode(fields.get("mode", ""))
    except ValueError:
        raise PolicyError(POLICY_INVALID, f"bad mode {fields.get('mode', '')[:40]!r}") from None
    age = fields.get("max_age", "")
    if not age.isdigit() or len(age) > 10:
        raise PolicyError(POLICY_INVALID, f"bad max_age {age[:40]!r}")
    if mode is not Mode.NONE and not mx:
        raise PolicyError(POLICY_INVALID, "no mx lines")
    for pattern in mx:
        if not pattern or " " in pattern or "*" in pattern.removeprefix("*."):
            raise PolicyError(POLICY_INVALID, f"bad mx pattern {pattern[:80]!r}")
    return Policy(mode, tuple(mx), min(int(age), MAX_AGE_LIMIT), text)


def policy_tls_context(ca_file: str = "") -> ssl.SSLContext:
    """PKIX verification with the system's CAs, or only `ca_file`'s when one is given."""
    return ssl.create_default_context(cafile=ca_file or None)


class PolicyFetcher:
    """Fetches `https://mta-sts.<domain>[:port]/.well-known/mta-sts.txt`."""

    def __init__(
        self,
        resolver: MxResolver,
        *,
        port: int = 443,
        timeout: float = 20.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.resolver = resolver
        self.port = port
        self.timeout = timeout
        self.tls = tls or policy_tls_context()

    async def fetch(self, domain: str) -> Policy:
        """The domain's policy. Raises PolicyError."""
        host = f"mta-sts.{domain}"
        try:
            async with asyncio.timeout(self.timeout):
                text = await self._get(host)
        except TimeoutError:
            raise PolicyError(FETCH_ERROR, f"{host}: no policy within {self.timeout:g}s") from None
        return parse_policy(text)

    async def _get(self, host: str) -> str:
        try:
            addresses = await self.resolver.addresses(host)
        except DnsError as exc:
            raise PolicyError(FETCH_ERROR, exc.text) from None
        failure = PolicyError(FETCH_ERROR, f"{host}: no address")
        for address in addresses[:3]:
            try:
                reader, writer = await asyncio.open_connection(
                    address, self.port, ssl=self.tls, server_hostname=host
                )
            except ssl.SSLCertVerificationError as exc:
                raise PolicyError(WEBPKI_INVALID, f"{host}: {exc.verify_message}") from None
            except (OSError, ssl.SSLError, ValueError) as exc:
                # ValueError: a name the TLS layer cannot encode as a server name (IDNA).
                failure = PolicyError(FETCH_ERROR, f"{host}[{address}]: {exc}")
                continue
            try:
                return await _exchange(reader, writer, host)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
        raise failure


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> str:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_POLICY_BYTES)
    request = h11.Request(
        method="GET",
        target="/.well-known/mta-sts.txt",
        headers=[("Host", host), ("User-Agent", _USER_AGENT), ("Connection", "close")],
    )
    try:
        writer.write((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:  # redirects included (RFC 8461 3.3)
                    raise PolicyError(FETCH_ERROR, f"{host}: HTTP {event.status_code}")
                kind = dict(event.headers).get(b"content-type", b"").split(b";")[0].strip()
                if kind.lower() != b"text/plain":
                    raise PolicyError(FETCH_ERROR, f"{host}: not text/plain ({kind[:40]!r})")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_POLICY_BYTES:
                    raise PolicyError(FETCH_ERROR, f"{host}: policy over {MAX_POLICY_BYTES} bytes")
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed before the end, or an informational answer
                raise PolicyError(FETCH_ERROR, f"{host}: the answer ended early")
    except h11.ProtocolError as exc:
        raise PolicyError(FETCH_ERROR, f"{host}: not an HTTP answer ({exc})") from None
    except (OSError, ssl.SSLError) as exc:
        raise PolicyError(FETCH_ERROR, f"{host}: {exc}") from None
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(POLICY_INVALID, f"{host}: policy is not UTF-8") from None


@dataclass(slots=True)
class _Cached:
    ident: str
    policy: Policy | None  # None: the last fetch failed and nothing was cached
    fetched: float
    failure: PolicyError | None = None
    retry_at: float = 0.0  # after a failed fetch: not fetched again before this

    def fresh(self, now: float) -> bool:
        if now < self.retry_at:
            return True
        return self.policy is not None and now - self.fetched < self.policy.max_age

    def alive(self, now: float) -> Policy | None:
        """The cached policy while its max_age lasts."""
        if self.policy is not None and now - self.fetched < self.policy.max_age:
            return self.policy
        return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What MTA-STS says for one delivery: the policy in force (None: none), and a failure to
    report (TLS-RPT) when a fetch failed."""

    policy: Policy | None
    failure: PolicyError | None = None


class MtaSts:
    """The policy in force for a domain, fetched and cached as the module docstring says."""

    def __init__(
        self,
        resolver: MxResolver,
        fetcher: PolicyFetcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.fetcher = fetcher
        self.clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._fetching: dict[str, asyncio.Task[Lookup]] = {}
        self.fetches = 0

    async def txt_id(self, domain: str) -> str | None:
        """The id of `_mta-sts.<domain>`; None for no (valid) record. Raises DnsError."""
        strings = await self.resolver.txt(f"_mta-sts.{domain}", limit=MAX_TXT_BYTES)
        return parse_txt(strings)

    async def lookup(self, domain: str) -> Lookup:
        domain = domain.lower().rstrip(".")
        cached = self._cache.get(domain)
        try:
            ident = await self.txt_id(domain)
        except DnsError as exc:
            if exc.permanent:
                ident = None
            else:  # our DNS or theirs failing says nothing about the policy: keep what we have
                return Lookup(cached.alive(self.clock()) if cached else None)
        now = self.clock()
        if ident is None:
            # No record: a cached policy stays in force until it expires (RFC 8461 5.1); an
            # attacker who strips the TXT record cannot switch enforcement off.
            return Lookup(cached.alive(now) if cached else None)
        if cached and (cached.ident == ident or now < cached.retry_at) and cached.fresh(now):
            self._cache.move_to_end(domain)
            return Lookup(cached.alive(now), cached.failure)
        running = self._fetching.get(domain)
        if running is None:
            # A task of its own: a delivery cancelled while it waits (a drain) does not cancel
            # the fetch the others wait for.
            running = asyncio.create_task(self._refresh(domain, ident, cached))
            self._fetching[domain] = running
            running.add_done_callback(lambda _: self._fetching.pop(domain, None))
        return await asyncio.shield(running)

    async def close(self) -> None:
        """Stop the fetches in flight (at shutdown)."""
        running = list(self._fetching.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _refresh(self, domain: str, ident: str, cached: _Cached | None) -> Lookup:
        self.fetches += 1
        try:
            policy = await self.fetcher.fetch(domain)
        except PolicyError as exc:
            log.info("event=mta_sts_fetch_failed domain=%s kind=%s error=%s", domain, exc.kind, exc)
            now = self.clock()
            if cached and cached.alive(now):
                # RFC 8461 5.1: a failed refresh keeps the policy we have; try again later.
                cached.failure = exc
                cached.retry_at = now + FAILURE_BACKOFF
                return Lookup(cached.policy, exc)
            self._put(domain, _Cached(ident, None, now, exc, now + FAILURE_BACKOFF))
            return Lookup(None, exc)
        log.info("event=mta_sts_policy domain=%s id=%s mode=%s", domain, ident, policy.mode.value)
        self._put(domain, _Cached(ident, policy, self.clock()))
        return Lookup(policy)

    def _put(self, domain: str, entry: _Cached) -> None:
        self._cache[domain] = entry
        self._cache.move_to_end(domain)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
