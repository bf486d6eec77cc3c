"""SPF (RFC 7208): may this client IP send mail for the envelope sender's domain?

Our own evaluator on `trust/dns.py`, not pyspf. pyspf's last release is from 2020; it resolves
synchronously (a blocking lookup per term would stall every session on the node's one event loop,
or need a thread per check), keeps its own DNS cache beside ours, and its limits are its own.
Here every lookup goes through the node's bounded, caching resolver on the event loop, and the
limits are the RFC's and ours:
- at most 10 terms that cause DNS lookups (include, a, mx, ptr, exists, redirect), then
  permerror (RFC 7208 4.6.4); at most 10 MX names per `mx` and 10 PTR names per `ptr`;
- at most 2 void lookups (NXDOMAIN or an empty answer), then permerror (4.6.4);
- an include or redirect back to a domain already on the chain is permerror (a loop; the
  lookup limit would end it too, but later);
- one deadline for the whole evaluation (`timeout`, at least the 20 s of 4.6.4), then temperror;
  a DNS failure (timeout, SERVFAIL) is temperror at once (RFC 7208 5);
- a TXT answer past the resolver's size bound is permerror (3.4); a macro expansion past
  `MAX_EXPANSION` octets is permerror, and a domain-spec is cut to 253 octets (7.3).

Macros (RFC 7208 7): s l o d i v h with digit and `r` transformers and every delimiter, and
%% %_ %-. The `p` macro expands to "unknown" without a PTR lookup (7.3 allows it, and
discourages `p`); c, r and t are for `exp` only, whose explanation we never fetch: a fail needs
no text from the sender's domain.

When MAIL FROM is null the HELO name is checked instead, as postmaster@helo (2.4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from mailfort.trust.dns import Answer, BadName, DnsFailure, TrustResolver, TxtTooLarge

MAX_LOOKUPS: Final = 10  # RFC 7208 4.6.4
MAX_VOID: Final = 2  # RFC 7208 4.6.4
MAX_NAMES: Final = 10  # MX names per mx, PTR names per ptr (4.6.4)
MAX_EXPANSION: Final = 8192  # octets a macro-string may grow to before it is refused
DEFAULT_TIMEOUT: Final = 20.0  # RFC 7208 4.6.4: at least 20 seconds for the whole check


class Result(Enum):
    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


_QUALIFIERS: Final = {"+": Result.PASS, "-": Result.FAIL, "~": Result.SOFTFAIL, "?": Result.NEUTRAL}


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: Result
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain checked
    sender: str  # the address checked (postmaster@helo for a null sender)
    reason: str = ""
    lookups: int = 0


class _Error(Exception):
    def __init__(self, result: Result, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def _perm(reason: str) -> _Error:
    return _Error(Result.PERMERROR, reason)


@dataclass
class _State:
    resolver: TrustResolver
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    chain: list[str] = field(default_factory=list)

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _perm(f"more than {MAX_LOOKUPS} DNS lookups")

    def void(self, answer: Answer) -> Answer:
        if answer.void:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise _perm(f"more than {MAX_VOID} void lookups")
        return answer


async def check_spf(
    resolver: TrustResolver,
    ip: str,
    sender: str,
    helo: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> SpfResult:
    """The SPF result for a client `ip` that said `helo` and MAIL FROM:<`sender`>."""
    identity = "mailfrom"
    if not sender:
        identity, sender = "helo", f"postmaster@{helo}"
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    if not sender.partition("@")[0] or "@" not in sender:
        sender = f"postmaster@{domain}"  # RFC 7208 4.3: an empty local-part is "postmaster"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return SpfResult(Result.NONE, identity, domain, sender, "no client address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not _valid_domain(domain):
        # RFC 7208 4.3: a malformed domain (or an address literal as HELO) has no SPF record.
        return SpfResult(Result.NONE, identity, domain, sender, "not a domain name")
    state = _State(resolver, address, sender, helo)
    try:
        async with asyncio.timeout(timeout):
            result = await _check_host(state, domain)
        reason = ""
    except _Error as exc:
        result, reason = exc.result, exc.reason
    except TimeoutError:
        result, reason = Result.TEMPERROR, f"no verdict within {timeout:g} s"
    except ValueError as exc:  # text no rule above foresaw (an encoding, a number): malformed
        result, reason = Result.PERMERROR, f"malformed: {exc}"[:200]
    return SpfResult(result, identity, domain, sender, reason, state.lookups)


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253:
        return False
    return all(0 < len(label) <= 63 for label in labels)


async def _record(state: _State, domain: str) -> str | None:
    """The domain's one SPF record (RFC 7208 4.5), or None when it has none."""
    try:
        answer = await state.resolver.txt(domain)
    except DnsFailure as exc:
        raise _Error(Result.TEMPERROR, str(exc)) from None
    except TxtTooLarge as exc:
        raise _perm(str(exc)) from None
    except BadName:
        return None
    found = [r for r in answer.records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    if len(found) > 1:
        raise _perm(f"{domain} has {len(found)} SPF records")
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class _Term:
    qualifier: Result
    name: str  # mechanism name, lower case
    spec: str | None  # domain-spec or network, unexpanded
    cidr4: int | None = None
    cidr6: int | None = None


_MODIFIER: Final = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", re.S)
_DUAL_CIDR: Final = re.compile(r"^(.*?)(?:/(0|[1-9][0-9]{0,2}))?(?://(0|[1-9][0-9]{0,2}))?$", re.S)
_CIDR: Final = re.compile(r"^(.*?)(?:/(0|[1-9][0-9]{0,2}))?$", re.S)


def _parse(record: str) -> tuple[list[_Term], str | None]:
    """The record's directives and its redirect target; permerror for any syntax error
    anywhere in it (RFC 7208 4.6: before any term is evaluated)."""
    terms: list[_Term] = []
    redirect: str | None = None
    seen: set[str] = set()
    for word in record.split(" ")[1:]:
        if not word:
            continue
        modifier = _MODIFIER.match(word)
        if modifier is not None and ":" not in modifier.group(1):
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if name in seen:
                    raise _perm(f"{name}= given twice")
                seen.add(name)
                _check_macros(value)
                if name == "redirect":
                    redirect = value
            continue  # unknown modifiers are ignored (RFC 7208 6)
        qualifier = _QUALIFIERS.get(word[0])
        if qualifier is None:
            qualifier = Result.PASS
        else:
            word = word[1:]
        terms.append(_mechanism(qualifier, word))
    return terms, redirect


def _mechanism(qualifier: Result, word: str) -> _Term:
    name, colon, rest = word.partition(":")
    lowered = name.lower()
    if lowered in ("a", "mx") or lowered.startswith(("a/", "mx/")):
        base, _, _ = lowered.partition("/")
        tail = word[len(base) :]
        spec_part = tail[1:] if tail.startswith(":") else tail
        match = _DUAL_CIDR.match(spec_part)
        assert match is not None  # the pattern matches any text
        spec = match.group(1) if tail.startswith(":") else None
        if tail and not tail.startswith((":", "/")):
            raise _perm(f"unknown mechanism {word!r}")
        if spec is not None:
            _check_macros(spec)
            if not spec:
                raise _perm(f"empty domain in {word!r}")
        elif match.group(1):
            raise _perm(f"bad {base} mechanism {word!r}")
        cidr4 = _length(match.group(2), 32, word)
        cidr6 = _length(match.group(3), 128, word)
        return _Term(qualifier, base, spec, cidr4, cidr6)
    if lowered == "all":
        if colon:
            raise _perm(f"bad all mechanism {word!r}")
        return _Term(qualifier, "all", None)
    if lowered in ("include", "exists"):
        if not colon or not rest:
            raise _perm(f"{lowered} needs a domain")
        _check_macros(rest)
        return _Term(qualifier, lowered, rest)
    if lowered == "ptr":
        if colon:
            if not rest:
                raise _perm("empty domain in ptr")
            _check_macros(rest)
        return _Term(qualifier, "ptr", rest if colon else None)
    if lowered in ("ip4", "ip6"):
        if not colon:
            raise _perm(f"{lowered} needs a network")
        match = _CIDR.match(rest)
        assert match is not None
        try:
            network = ipaddress.ip_address(match.group(1))
        except ValueError:
            raise _perm(f"bad address in {word!r}") from None
        if (lowered == "ip4") != isinstance(network, ipaddress.IPv4Address):
            raise _perm(f"wrong address family in {word!r}")
        limit = 32 if lowered == "ip4" else 128
        return _Term(qualifier, lowered, str(network), _length(match.group(2), limit, word))
    raise _perm(f"unknown mechanism {word!r}")


def _length(text: str | None, limit: int, word: str) -> int | None:
    if text is None:
        return None
    value = int(text)
    if value > limit:
        raise _perm(f"prefix length over {limit} in {word!r}")
    return value


async def _check_host(state: _State, domain: str) -> Result:
    if domain in state.chain:
        raise _perm(f"loop: {domain} includes itself")
    state.chain.append(domain)
    try:
        record = await _record(state, domain)
        if record is None:
            return Result.NONE
        terms, redirect = _parse(record)
        for term in terms:
            if await _matches(state, term, domain):
                return term.qualifier
        if redirect is None:
            return Result.NEUTRAL  # RFC 7208 4.7: no match, no redirect
        state.count()
        target = _expand_domain(state, redirect, domain)
        if not _valid_domain(target):
            raise _perm(f"redirect to a bad domain {target!r}")
        # The domain stays on the chain: a redirect back to it is a loop like an include.
        result = await _check_host(state, target)
        if result is Result.NONE:
            raise _perm(f"redirect to {target}, which has no SPF record")  # RFC 7208 6.1
        return result
    finally:
        state.chain.pop()


async def _matches(state: _State, term: _Term, domain: str) -> bool:
    name = term.name
    ip = state.ip
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        assert term.spec is not None
        if (name == "ip4") != (ip.version == 4):
            return False
        prefix = term.cidr4 if term.cidr4 is not None else (32 if name == "ip4" else 128)
        return ip in ipaddress.ip_network(f"{term.spec}/{prefix}", strict=False)
    state.count()
    target = domain if term.spec is None else _expand_domain(state, term.spec, domain)
    if name == "include":
        return await _include(state, target)
    if name == "a":
        return _within(ip, await _addresses(state, target, counted=True), term)
    if name == "mx":
        exchanges = state.void(await _ask(state.resolver.mx(target))).records
        if len(exchanges) > MAX_NAMES:
            raise _perm(f"{target} has more than {MAX_NAMES} MX records")
        for exchange in exchanges:
            if _within(ip, await _addresses(state, exchange, counted=False), term):
                return True
        return False
    if name == "exists":
        return bool(state.void(await _ask(state.resolver.addresses(target, "A"))).records)
    if name == "ptr":
        return target.lower() in [n.lower() for n in await _validated_names(state, target)]
    raise _perm(f"unknown mechanism {name!r}")  # _parse lets none through


async def _include(state: _State, target: str) -> bool:
    """RFC 7208 5.2: pass matches; fail, softfail and neutral do not; errors propagate, and an
    included domain without a record is permerror."""
    if not _valid_domain(target):
        raise _perm(f"include of a bad domain {target!r}")
    result = await _check_host(state, target)
    if result is Result.PASS:
        return True
    if result in (Result.FAIL, Result.SOFTFAIL, Result.NEUTRAL):
        return False
    if result is Result.TEMPERROR:
        raise _Error(Result.TEMPERROR, f"include:{target}: temporary error")
    raise _perm(f"include:{target}: {result.value}")


async def _ask(lookup: object) -> Answer:
    try:
        return await lookup  # type: ignore[no-any-return,misc]
    except DnsFailure as exc:
        raise _Error(Result.TEMPERROR, str(exc)) from None
    except TxtTooLarge as exc:
        raise _perm(str(exc)) from None
    except BadName as exc:
        raise _perm(f"not a domain name: {exc}") from None


async def _addresses(state: _State, name: str, *, counted: bool) -> list[str]:
    rdtype = "A" if state.ip.version == 4 else "AAAA"
    answer = await _ask(state.resolver.addresses(name, rdtype))
    if counted:
        state.void(answer)
    return list(answer.records)


def _within(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, addresses: list[str], term: _Term
) -> bool:
    cidr = term.cidr4 if ip.version == 4 else term.cidr6
    prefix = cidr if cidr is not None else (32 if ip.version == 4 else 128)
    for address in addresses:
        try:
            network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        except ValueError:
            continue
        if ip in network:
            return True
    return False


async def _validated_names(state: _State, target: str) -> list[str]:
    """RFC 7208 5.5: the client's PTR names whose own addresses include the client, those
    equal to or under `target`; at most MAX_NAMES looked at; a DNS error is no match."""
    try:
        names = (await state.resolver.ptr(str(state.ip))).records[:MAX_NAMES]
    except (DnsFailure, BadName, TxtTooLarge):
        return []
    suffix = "." + target.lower()
    validated = []
    for name in names:
        lowered = name.lower()
        if lowered != target.lower() and not lowered.endswith(suffix):
            continue
        try:
            addresses = await _addresses(state, name, counted=False)
        except _Error:
            continue
        if str(state.ip) in {str(ipaddress.ip_address(a)) for a in addresses}:
            validated.append(target)
    return validated


# -- macros (RFC 7208 7) -----------------------------------------------------------------------
_MACRO: Final = re.compile(r"%(?:\{([A-Za-z])([0-9]*)(r?)([.+,/_=-]*)\}|%|_|-)", re.I)
_LETTERS: Final = frozenset("slodipvh")


def _check_macros(text: str) -> None:
    """Syntax of a macro-string: every % starts a valid macro (RFC 7208 7.1)."""
    at = 0
    while True:
        at = text.find("%", at)
        if at < 0:
            return
        match = _MACRO.match(text, at)
        if match is None:
            raise _perm(f"bad macro in {text[:80]!r}")
        if match.group(1) is not None and match.group(1).lower() not in _LETTERS:
            raise _perm(f"macro letter {match.group(1)!r} not allowed here")
        at = match.end()


def expand(state: _State, text: str, domain: str) -> str:
    """A macro-string expanded (RFC 7208 7.3); permerror past MAX_EXPANSION octets."""
    out: list[str] = []
    size = 0
    at = 0
    for match in _MACRO.finditer(text):
        out.append(text[at : match.start()])
        at = match.end()
        whole = match.group(0)
        if whole == "%%":
            piece = "%"
        elif whole == "%_":
            piece = " "
        elif whole == "%-":
            piece = "%20"
        else:
            piece = _macro(state, match, domain)
        out.append(piece)
        size += len(piece) + len(out[-2])
        if size > MAX_EXPANSION:
            raise _perm("macro expansion too large")
    out.append(text[at:])
    return "".join(out)


def _macro(state: _State, match: re.Match[str], domain: str) -> str:
    letter, digits, reverse, delimiters = match.groups()
    value = _letter_value(state, letter.lower(), domain)
    parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        significant = digits.lstrip("0")
        # More digits than a name could have labels: all of them (and no huge int parsed).
        keep = int(significant or "0") if len(significant) <= 4 else 10_000
        if keep == 0:
            raise _perm("macro keeps zero labels")
        parts = parts[-keep:]
    expanded = ".".join(parts)
    if letter.isupper():
        expanded = urllib.parse.quote(expanded, safe="")
    return expanded


def _letter_value(state: _State, letter: str, domain: str) -> str:
    local, _, sender_domain = state.sender.rpartition("@")
    if letter == "s":
        return state.sender
    if letter == "l":
        return local or "postmaster"
    if letter == "o":
        return sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if state.ip.version == 4:
            return str(state.ip)
        return ".".join(state.ip.exploded.replace(":", ""))
    if letter == "v":
        return "in-addr" if state.ip.version == 4 else "ip6"
    if letter == "h":
        return state.helo
    return "unknown"  # p: see the module docstring


def _expand_domain(state: _State, spec: str, domain: str) -> str:
    """A domain-spec expanded; over 253 octets, left-hand labels go until it fits (7.3)."""
    target = expand(state, spec, domain).rstrip(".")
    while len(target) > 253 and "." in target:
        target = target.partition(".")[2]
    return target
