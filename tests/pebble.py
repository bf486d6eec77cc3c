"""Let's Encrypt's test CA, pebble (a Debian package), on loopback for the ACME tests.

Its directory is served over HTTPS with a certificate made here (`tls_ca` is what a client must
trust for it); it validates HTTP-01 on `http_port` of the names that the name server given as
`dns` resolves, and issues from a root it makes at each start (`issuing_root()`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.certificates import issue
from tests.nodeproc import free_ports

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"


def _write_tls(root: Path) -> None:
    """A CA, and a certificate for 127.0.0.1/localhost signed by it, for the directory's HTTPS."""
    ca = issue(())
    cert = issue(("localhost", "127.0.0.1"), by=ca)
    (root / "directory-ca.pem").write_text(ca.cert_pem)
    (root / "directory-cert.pem").write_text(cert.cert_pem)
    (root / "directory-key.pem").write_text(cert.key_pem)


@dataclass
class Pebble:
    root: Path
    http_port: int  # where pebble's VA fetches /.well-known/acme-challenge/ (the node's http)
    dns: str  # host:port of the name server that resolves the names to validate
    port: int = 0
    management_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def tls_ca(self) -> Path:
        """The CA of the directory's own HTTPS certificate."""
        return self.root / "directory-ca.pem"

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def log_path(self) -> Path:
        return self.root / "pebble.log"

    def __post_init__(self) -> None:
        # Known before the start: a node can be configured for a CA that is not up yet.
        if not self.port:
            self.port, self.management_port = free_ports(2)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_tls(self.root)

    def start(self, timeout: float = 30.0) -> Pebble:
        cert, key = self.root / "directory-cert.pem", self.root / "directory-key.pem"
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": 9,  # TLS-ALPN-01 is not used; nothing listens there
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = self.root / "pebble-config.json"
        path.write_text(json.dumps(config))
        env = dict(
            os.environ,
            PEBBLE_VA_NOSLEEP="1",  # validate at once, not after up to 15 s
            PEBBLE_WFE_NONCEREJECT="0",  # no random badNonce rejections
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PEBBLE, "-config", str(path), "-dnsserver", self.dns],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.management_port), timeout=1):
                    pass
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pebble did not listen:\n{self.log_path.read_text()[-3000:]}")

    def issuing_root(self) -> str:
        """The root pebble issues from (PEM), from its management interface."""
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return str(answer.read().decode())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
