"""The TLS each MX host must have, from the destination's published policies, and the counting of
each session for TLS reports.

For one delivery, `TlsPolicies.destination` looks up the domain's MTA-STS policy (`mtasts.py`);
then, per MX host, `host` decides (RFC 8461 2: DANE first):
- usable DANE TLSA records (`dane.py`): TLS, and the server's certificate must match ("dane");
- an MTA-STS policy: `enforce` uses only MX hosts matching it, with TLS and a certificate verified
  for the host name ("verify"), `testing` tries the same but only counts what fails;
- neither: the operator's `[delivery] tls`.
A host that must not be used raises `Unusable`. Sessions under a policy are counted in a
`tlsrpt.TlsCounter` (successes summed, failures by type, host and address).
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mailfort.delivery import tlsrpt
from mailfort.delivery.dane import DNSSEC_INVALID, DanePolicy, policy_of, tlsa_name
from mailfort.delivery.mtasts import Mode, MtaSts, Policy
from mailfort.delivery.mx import DnsError, MxResolver

DANE = "dane"  # a HostTls mode beside [delivery] tls's none | may | encrypt | verify


@dataclass(frozen=True, slots=True)
class HostTls:
    """The TLS one MX host must have: a `[delivery] tls` mode, or "dane"; where its sessions are
    counted; `testing`: an MTA-STS testing policy (failures counted, then the operator's `tls`)."""

    mode: str
    dane: DanePolicy | None = None
    report: tlsrpt.Session | None = None
    testing: bool = False


class Unusable(Exception):
    """The MX host must not be used for this delivery; `dns`: because a lookup failed."""

    def __init__(self, text: str, *, dns: bool) -> None:
        super().__init__(text)
        self.text = text
        self.dns = dns


class TlsPolicies:
    def __init__(
        self,
        *,
        default: str,
        resolver: MxResolver,
        mta_sts: MtaSts | None = None,
        dane: bool = False,
        counter: tlsrpt.TlsCounter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.default = default
        self.resolver = resolver
        self.mta_sts = mta_sts
        self.dane = dane
        self.counter = counter
        self.clock = clock

    async def destination(self, domain: str) -> Policy | None:
        """The MTA-STS policy in force for `domain` (None: none, or mode none)."""
        if self.mta_sts is None:
            return None
        found = await self.mta_sts.lookup(domain)
        if found.failure is not None and found.policy is None:
            self.count(tlsrpt.Session(domain, tlsrpt.POLICY_STS, (), result=found.failure.kind))
        if found.policy is None or found.policy.mode is Mode.NONE:
            return None
        return found.policy

    async def host(self, domain: str, host: str, port: int, policy: Policy | None) -> HostTls:
        """How to talk to MX `host` of `domain` (module docstring). Raises Unusable."""
        dane = await self._dane(domain, host, port) if self.dane else None
        if dane is not None:
            report = tlsrpt.Session(domain, tlsrpt.POLICY_TLSA, tuple(dane.strings()), host)
            return HostTls(DANE, dane=dane, report=report)
        if policy is None:
            return HostTls(self.default)
        report = tlsrpt.Session(domain, tlsrpt.POLICY_STS, tuple(policy.text.splitlines()), host)
        testing = policy.mode is Mode.TESTING
        if not policy.allows(host):
            self.count(replace(report, result=tlsrpt.VALIDATION_FAILURE))
            if not testing:
                raise Unusable(
                    f"MX host {host} is not allowed by the MTA-STS policy of {domain}", dns=False
                )
        return HostTls("verify", report=report, testing=testing)

    async def _dane(self, domain: str, host: str, port: int) -> DanePolicy | None:
        try:
            ipaddress.ip_address(host)
            return None  # an address has no TLSA records
        except ValueError:
            pass
        try:
            records, secure = await self.resolver.tlsa(tlsa_name(host, port))
        except DnsError as exc:
            # A validating resolver answers SERVFAIL for a forged or broken signature: the
            # host may have TLSA records we cannot see, so it is not used (RFC 7672 2.1.1).
            self.count(tlsrpt.Session(domain, tlsrpt.POLICY_TLSA, (), host, result=DNSSEC_INVALID))
            raise Unusable(f"TLSA lookup for MX host {host} failed: {exc.text}", dns=True) from None
        return policy_of(host, records, secure)

    def count(self, session: tlsrpt.Session) -> None:
        if self.counter is not None:
            self.counter.count(session, self.clock())

    def session(self, rule: HostTls, address: str, result: str) -> None:
        """Count a session under `rule`'s policy: successes in one sum, failures in detail."""
        if rule.report is None:
            return
        if result:
            self.count(replace(rule.report, address=address, result=result))
        else:
            self.count(replace(rule.report, mx_host=""))


# OpenSSL's X509_V_ERR_* codes, as RFC 8460 4.3 result types.
_VERIFY_KINDS = {
    10: tlsrpt.CERTIFICATE_EXPIRED,  # CERT_HAS_EXPIRED
    62: tlsrpt.CERTIFICATE_HOST_MISMATCH,  # HOSTNAME_MISMATCH
    2: tlsrpt.CERTIFICATE_NOT_TRUSTED,  # UNABLE_TO_GET_ISSUER_CERT
    18: tlsrpt.CERTIFICATE_NOT_TRUSTED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: tlsrpt.CERTIFICATE_NOT_TRUSTED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: tlsrpt.CERTIFICATE_NOT_TRUSTED,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: tlsrpt.CERTIFICATE_NOT_TRUSTED,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


def failure_kind(exc: BaseException) -> str:
    """The RFC 8460 result type of a failed STARTTLS handshake."""
    seen: BaseException | None = exc
    for _ in range(5):  # aiosmtplib may wrap the ssl error
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return _VERIFY_KINDS.get(seen.verify_code, tlsrpt.VALIDATION_FAILURE)
        seen = seen.__cause__ or seen.__context__
    return tlsrpt.VALIDATION_FAILURE


_DER = 2  # _ssl.ENCODING_DER


def peer_chain(ssl_object: object) -> list[bytes]:
    """The certificates (DER) the server sent on a TLS session, its own first, unverified; just
    its own where the ssl module does not give the chain."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return []
    # Public from Python 3.13; the same method of the _ssl object since 3.10.
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    chain = getter() if getter is not None else None
    if chain:
        return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain]
    own = ssl_object.getpeercert(binary_form=True)
    return [own] if own else []
