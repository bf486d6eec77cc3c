"""What the tests of `mailfort dns` and `mailfort doctor` share: a node's config with public
addresses and ports, DKIM keys in its store, the CLI as the operator runs it, and a zone file
loaded into tests/dnsserver.py."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailfort.store.records import DkimKey, DkimState
from mailfort.store.sqlite import SqliteStore
from tests.dnsserver import Zone

HOST = "mx1.provider.test"
DOMAIN = "example.test"
ADDRESS = "192.0.2.10"
ADDRESS6 = "2001:db8::10"

CONFIG = f"""\
hostname = "{HOST}"
data_dir = "{{data_dir}}"
local_domains = ["{DOMAIN}"]

[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
submissions = "127.0.0.1:2465"
imap = ""
imaps = "127.0.0.1:2993"
pop3 = ""
pop3s = "127.0.0.1:2995"
http = "127.0.0.1:8080"

[delivery]
dns_nameservers = ["{{nameserver}}"]
dns_timeout = 1.0

[dns]
public_addresses = ["{ADDRESS}", "{ADDRESS6}"]
dmarc_rua = "dmarc@provider.test"

[dns.public_ports]
submission = 587
submissions = 465
imaps = 993
pop3s = 995
"""


def write_config(root: Path, nameserver: str) -> Path:
    path = root / "mailfort.toml"
    path.write_text(CONFIG.format(data_dir=root / "data", nameserver=nameserver))
    return path


def dkim_key(selector: str, state: DkimState, algorithm: str = "rsa-sha256") -> DkimKey:
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if algorithm == "rsa-sha256":
        public = rsa.generate_private_key(65537, 2048).public_key().public_bytes(*der)
    else:
        public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*raw)
    return DkimKey(
        domain=DOMAIN,
        selector=selector,
        algorithm=algorithm,
        private_key="(not used here)",
        public_key=base64.b64encode(public).decode(),
        state=state,
        created=time.time(),
    )


def add_dkim_keys(root: Path, keys: list[DkimKey]) -> None:
    async def run() -> None:
        store = SqliteStore(root / "data" / "mailfort.sqlite3")
        await store.open()
        try:
            await store.add_dkim_keys(keys)
        finally:
            await store.close()

    asyncio.run(run())


DKIM_KEYS = [
    dkim_key("r2026", DkimState.ACTIVE),
    dkim_key("e2026", DkimState.ACTIVE, "ed25519-sha256"),
    dkim_key("r2025", DkimState.RETIRING),
    dkim_key("r2024", DkimState.RETIRED),
]


def mailfort(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfort", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parse_zone(text: str) -> dns.zone.Zone:
    """dnspython's zone-file parser over the whole output: every name absolute, any zone."""
    return dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)


def serve(zone: Zone, zone_text: str) -> Zone:
    """`zone` (tests/dnsserver.py) made to hold exactly the records of a zone file."""
    zone.clear()
    for name, ttl, rdata in parse_zone(zone_text).iterate_rdatas():
        zone.add(name.to_text(), dns.rdatatype.to_text(rdata.rdtype), rdata.to_text(), ttl)
    return zone


def lines_about(output: str, name: str, purpose: str = "") -> str:
    """The finding about `name` (whose purpose starts with `purpose`) with its found/fix lines."""
    blocks = output.split("\n")
    for i, line in enumerate(blocks):
        if f" {name}  ({purpose}" in line:
            rest = [line]
            for more in blocks[i + 1 :]:
                if not more.startswith(" "):
                    break
                rest.append(more)
            return "\n".join(rest)
    raise AssertionError(f"no finding about {name} in:\n{output}")
