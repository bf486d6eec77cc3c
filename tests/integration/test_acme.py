"""Certificates from ACME (RFC 8555), against Let's Encrypt's test CA pebble on loopback.

A node with `[tls] acme = true` gets a certificate for its host name over HTTP-01 (pebble resolves
the name through tests/dnsserver.py and fetches the answer from the node's http listener) and a
TLS client that trusts only pebble's issuing root sees it on imaps and submissions; renewal
replaces it without a restart; with the CA gone the node keeps serving what it has and counts the
failure; at first start it serves its self-signed certificate until an order succeeds; two nodes
on one PostgreSQL store serve the one certificate that one of them ordered.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.cluster_support import PgSchema, base_dsn, cluster_node
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess, free_ports
from tests.pebble import Pebble

pytestmark = pytest.mark.slow

HOSTNAME = "mx.mailfort.test"  # tests/nodeproc.py's hostname
NAMES = (HOSTNAME, "mta-sts.example.test")


@pytest.fixture
def dns() -> Iterator[NameServer]:
    zone = Zone()
    for name in NAMES:
        zone.add(name, "A", "127.0.0.1")
    server = NameServer(zone).start()
    yield server
    server.stop()


def acme_config(pebble: Pebble, **settings: object) -> str:
    values: dict[str, object] = {
        "acme": True,
        "acme_directory": pebble.directory,
        "acme_ca_file": str(pebble.tls_ca),
        "acme_email": "postmaster@example.test",
        "acme_names": list(NAMES),
        "acme_reload_seconds": 0.3,
        "acme_retry_seconds": 0.5,
        "acme_check_seconds": 3600,
    }
    values.update(settings)
    # JSON's strings, numbers and lists are TOML's too.
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n[tls]\n" + "\n".join(lines) + "\n"


@dataclass
class Served:
    """What a client that trusts `root` sees on a port: the certificate's fingerprint, or None
    when the handshake does not verify (the self-signed one)."""

    root: str

    def fingerprint(self, port: int, *, starttls: bool = False) -> str | None:
        context = ssl.create_default_context(cadata=self.root)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            if starttls:  # SMTP submission: the greeting, EHLO, STARTTLS
                reader = raw.makefile("rb")
                reader.readline()
                raw.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
                line = b""
                while not line.startswith(b"220 "):
                    line = reader.readline()
                    assert line, "connection closed before STARTTLS's answer"
            try:
                with context.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                    der = tls.getpeercert(binary_form=True)
            except ssl.SSLCertVerificationError:
                return None
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def wait_for(
        self, port: int, accept: Callable[[str | None], bool], timeout: float = 60.0
    ) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.fingerprint(port)
            if accept(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)


def acme_node(root: Path, pebble: Pebble, http_port: int, **settings: object) -> NodeProcess:
    node = NodeProcess(
        root / "node",
        http=True,
        fixed_ports={"http": http_port},
        # The account page over plain http from loopback (profile_signer).
        extra_config=acme_config(pebble, **settings) + "[auth]\nallow_plaintext_loopback = true\n",
    )
    node.provision()
    return node


def metric(node: NodeProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['http']}/metrics") as answer:
        text = answer.read().decode()
    found = re.findall(rf"^{re.escape(name)} ([\d.e+]+)$", text, re.M)
    return sum(float(x) for x in found)


FAILED = 'mailfort_acme_orders_total{result="failed"}'
ISSUED = 'mailfort_acme_orders_total{result="issued"}'


def test_a_node_gets_its_certificate_and_serves_it_on_every_tls_listener(
    tmp_path: Path, dns: NameServer
) -> None:
    (http_port,) = free_ports(1)
    pebble = Pebble(tmp_path / "pebble", http_port=http_port, dns=dns.address).start()
    node = acme_node(tmp_path, pebble, http_port)
    try:
        node.start()
        served = Served(pebble.issuing_root())
        issued = served.wait_for(node.ports["imaps"], lambda seen: seen is not None)
        assert issued is not None, node.log()[-3000:]
        assert served.fingerprint(node.ports["submissions"]) == issued
        assert served.fingerprint(node.ports["submission"], starttls=True) == issued
        assert served.fingerprint(node.ports["pop3s"]) == issued
        # The store holds it for every node, with both names.
        stored = node._query(lambda store: store.certificate("acme"))
        assert set(stored.names) == set(NAMES)
        assert metric(node, ISSUED) == 1
        assert metric(node, FAILED) == 0
        assert profile_signer(node) == issued
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        pebble.stop()


def profile_signer(node: NodeProcess) -> str:
    """The fingerprint of the certificate a user's Apple profile is signed with: the one the
    node serves, which customers' devices can check, not the self-signed one it started with."""
    user = node.add_user("profile@example.test")
    token = base64.b64encode(f"{user}:x".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.ports['http']}/account/mailfort.mobileconfig",
        headers={"Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        signed = answer.read()
    signer, *_chain = pkcs7.load_der_pkcs7_certificates(signed)
    return hashlib.sha256(signer.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_renewal_replaces_the_certificate_without_a_restart(
    tmp_path: Path, dns: NameServer
) -> None:
    (http_port,) = free_ports(1)
    pebble = Pebble(tmp_path / "pebble", http_port=http_port, dns=dns.address).start()
    # A renewal window longer than pebble's certificates live: every check renews.
    node = acme_node(
        tmp_path, pebble, http_port, acme_renew_before_days=36500, acme_check_seconds=1
    )
    try:
        node.start()
        assert node.proc is not None
        pid = node.proc.pid
        served = Served(pebble.issuing_root())
        first = served.wait_for(node.ports["imaps"], lambda seen: seen is not None)
        assert first is not None, node.log()[-3000:]
        second = served.wait_for(node.ports["imaps"], lambda seen: seen not in (None, first))
        assert second not in (None, first), node.log()[-3000:]
        # The other listeners share the reloaded context: the first one is gone everywhere.
        assert served.fingerprint(node.ports["submissions"]) not in (None, first)
        assert node.proc.pid == pid and node.proc.poll() is None
        assert metric(node, ISSUED) >= 2
    finally:
        node.stop()
        pebble.stop()


def self_signed(node: NodeProcess) -> str:
    """The fingerprint of the certificate a node makes itself at first start."""
    pem = (node.data_dir / "tls" / "cert.pem").read_bytes()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def unverified_fingerprint(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_without_the_ca_the_node_serves_what_it_has_and_counts_the_failures(
    tmp_path: Path, dns: NameServer
) -> None:
    (http_port,) = free_ports(1)
    pebble = Pebble(tmp_path / "pebble", http_port=http_port, dns=dns.address)
    # Every check renews, so that each one with the CA gone is a failed order.
    node = acme_node(
        tmp_path, pebble, http_port, acme_renew_before_days=36500, acme_check_seconds=1
    )
    try:
        # First start, the CA down: the self-signed certificate, and the failures counted.
        node.start()
        assert wait_until(lambda: metric(node, FAILED) >= 2), node.log()[-3000:]
        assert unverified_fingerprint(node.ports["imaps"]) == self_signed(node)
        assert "event=acme_failed" in node.log()
        # The CA comes up: the next retry gets a certificate.
        pebble.start()
        served = Served(pebble.issuing_root())
        assert served.wait_for(node.ports["imaps"], lambda seen: seen is not None) is not None
        # The CA goes away: the node goes on serving the last certificate it got.
        pebble.stop()
        failed = metric(node, FAILED)
        assert wait_until(lambda: metric(node, FAILED) > failed), node.log()[-3000:]
        last = served.fingerprint(node.ports["imaps"])
        assert last is not None
        assert wait_until(lambda: metric(node, FAILED) > failed + 1), node.log()[-3000:]
        assert served.fingerprint(node.ports["imaps"]) == last
        assert served.fingerprint(node.ports["submissions"]) == last
        assert node.proc is not None and node.proc.poll() is None
        assert "Traceback" not in node.log()
    finally:
        node.stop()
        pebble.stop()


def test_any_node_answers_a_challenge_another_put_in_the_store(tmp_path: Path) -> None:
    schema = PgSchema.create(base_dsn())
    node = NodeProcess(tmp_path / "plain", store_url=schema.url, http=True)
    try:
        node.start()
        token = "t" * 43

        async def publish(store: object) -> None:
            from mailfort.store.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            now = await store.clock()
            await store.put_acme_challenge(token, f"{token}.thumbprint", now + 60, now)

        schema.query(publish)
        url = f"http://127.0.0.1:{node.ports['http']}/.well-known/acme-challenge/"
        with urllib.request.urlopen(url + token) as answer:
            assert answer.read() == f"{token}.thumbprint".encode()
            assert answer.headers["Content-Type"] == "application/octet-stream"
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(url + "u" * 43)
        assert unknown.value.code == 404
    finally:
        node.stop()
        schema.drop()


def test_two_nodes_on_one_store_serve_the_certificate_one_of_them_ordered(
    tmp_path: Path, dns: NameServer
) -> None:
    schema = PgSchema.create(base_dsn())
    (http_b,) = free_ports(1)
    # The CA validates at node B's http listener, whichever node orders.
    pebble = Pebble(tmp_path / "pebble", http_port=http_b, dns=dns.address).start()
    config = acme_config(pebble)
    a = cluster_node(tmp_path, "node-a", schema.url, extra_config=config)
    b = NodeProcess(
        tmp_path / "node-b",
        name="node-b",
        store_url=schema.url,
        http=True,
        fixed_ports={"http": http_b},
        extra_config=config,
    )
    a.http = True
    try:
        schema.provision()
        a.write_config()
        b.write_config()
        a.start()
        b.start()
        served = Served(pebble.issuing_root())
        seen_a = served.wait_for(a.ports["imaps"], lambda seen: seen is not None)
        seen_b = served.wait_for(b.ports["imaps"], lambda seen: seen is not None)
        assert seen_a is not None and seen_a == seen_b, (a.log()[-2000:], b.log()[-2000:])
        assert metric(a, ISSUED) + metric(b, ISSUED) == 1
        for node in (a, b):
            assert "Traceback" not in node.log(), node.log()[-3000:]
    finally:
        for node in (a, b):
            node.stop()
        pebble.stop()
        schema.drop()


def test_a_node_stops_at_once_while_the_ca_does_not_answer(tmp_path: Path) -> None:
    # A "CA" that takes connections and never answers: the order waits on the request timeout.
    silent = socket.create_server(("127.0.0.1", 0))
    silent.setblocking(False)
    accepted: list[socket.socket] = []

    def accept() -> bool:
        with contextlib.suppress(BlockingIOError):
            accepted.append(silent.accept()[0])
        return bool(accepted)

    pebble = Pebble(tmp_path / "pebble", http_port=9, dns="127.0.0.1:9")
    node = acme_node(tmp_path, pebble, free_ports(1)[0])
    ca = f"https://127.0.0.1:{silent.getsockname()[1]}/dir"
    node.extra_config = node.extra_config.replace(pebble.directory, ca)
    node.write_config()
    try:
        node.start()
        assert wait_until(accept, timeout=20)
        started = time.monotonic()
        assert node.stop() == 0
        assert time.monotonic() - started < 10
        assert "Traceback" not in node.log(), node.log()[-3000:]
    finally:
        node.stop()
        for connection in [*accepted, silent]:
            connection.close()
