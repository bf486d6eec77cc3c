"""A tiny authoritative name server on loopback (dnslib), UDP and TCP on one port, for tests.

It answers from a table: `zone.add("mx.test", "MX", "10 mx1.mx.test.")`; a name not in the table
is NXDOMAIN, a known name without records of the asked type is an empty NOERROR answer (what the
implicit-MX rule of RFC 5321 5.1 needs), names in `servfail` get SERVFAIL, names in `silent`
get no answer at all (the client times out), and answers for names in `secure` carry the AD flag,
as a validating resolver's would (DANE trusts only those). dnspython in the node under test is
pointed at it by `[delivery] dns_nameservers`.
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSServer


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Zone(BaseResolver):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[RR]] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.secure: set[str] = set()
        self.queries: list[tuple[str, str]] = []

    @staticmethod
    def _key(name: str) -> str:
        return name.lower().rstrip(".") + "."

    def add(self, name: str, rtype: str, value: str, ttl: int = 60) -> Zone:
        (rr,) = RR.fromZone(f"{self._key(name)} {ttl} IN {rtype} {value}")
        with self._lock:
            self._records.setdefault(self._key(name), []).append(rr)
        return self

    def remove(self, name: str, rtype: str | None = None) -> Zone:
        """Drop the records of `rtype` at `name`, or all of them (the name stays, empty)."""
        with self._lock:
            kept = self._records.get(self._key(name), [])
            self._records[self._key(name)] = [
                rr for rr in kept if rtype is not None and QTYPE[rr.rtype] != rtype
            ]
        return self

    def clear(self) -> Zone:
        with self._lock:
            self._records.clear()
            self.servfail.clear()
            self.silent.clear()
            self.secure.clear()
        return self

    def replace(self, name: str, rtype: str, *values: str, ttl: int = 60) -> Zone:
        """`name`'s records of `rtype` become `values` (none: removed)."""
        self.remove(name, rtype)
        for value in values:
            self.add(name, rtype, value, ttl)
        return self

    def txt(self, name: str, value: str, ttl: int = 60) -> Zone:
        """A TXT record of any length, cut into character-strings of 255 octets (RFC 1035
        3.3.14) as a zone file would hold a DKIM key; an empty `value` is one empty string."""
        strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, max(len(value), 1), 255))
        return self.add(name, "TXT", strings, ttl)

    def exists(self, name: str) -> Zone:
        """A name with no records at all (NOERROR, empty answers) rather than NXDOMAIN."""
        with self._lock:
            self._records.setdefault(self._key(name), [])
        return self

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        reply.header.ad = 0
        qname = self._key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((qname, qtype))
            if qname in {self._key(n) for n in self.silent}:
                # dnslib's handler sends nothing when the resolver raises DNSError.
                raise DNSError(f"{qname} is silent")
            if qname in {self._key(n) for n in self.servfail}:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            records = self._records.get(qname)
            if records is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rr in records:
                if QTYPE[rr.rtype] == qtype:
                    reply.add_answer(rr)
            # dnslib's reply() copies the query's flags, AD included: only a secure name keeps it.
            reply.header.ad = int(qname in {self._key(n) for n in self.secure})
        return reply


class NameServer:
    """`zone` served on 127.0.0.1:`port`, UDP and TCP, from daemon threads."""

    def __init__(self, zone: Zone, host: str = "127.0.0.1") -> None:
        self.zone = zone
        self.host = host
        for _ in range(20):  # the UDP port picked may be taken for TCP: then pick again
            self._udp = DNSServer(zone, address=host, port=0, logger=_Quiet())
            self.port: int = self._udp.server.server_address[1]
            try:
                self._tcp = DNSServer(zone, address=host, port=self.port, tcp=True, logger=_Quiet())
                return
            except OSError:
                self._udp.server.server_close()
        raise OSError("no port free for both UDP and TCP")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> NameServer:
        self._udp.start_thread()
        self._tcp.start_thread()
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.stop()
            server.server.server_close()
