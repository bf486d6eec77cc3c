"""A test certificate authority (cryptography) and an HTTPS server on loopback that plays an
MTA-STS policy host, with the faults a policy host can have: down, slow, huge, redirecting.

`TestCa(dir)` writes `ca.pem`; `issue(dir, names)` writes `cert.pem`/`key.pem` signed by it into
`dir` (where `tests.smtpsink.Sink(tls_dir=dir)` picks them up), optionally expired. The node and
the client under test trust `ca.pem` through `[delivery] tls_ca_file`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PEM = serialization.Encoding.PEM


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class TestCa:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("mailfort test CA"))
            .issuer_name(_name("mailfort test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(_PEM))

    def issue(
        self, directory: Path, names: Sequence[str], *, expired: bool = False
    ) -> tuple[Path, Path]:
        """`cert.pem` and `key.pem` in `directory` for `names` (DNS names and 127.0.0.1)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=10)
        if expired:
            start, end = now - datetime.timedelta(days=20), now - datetime.timedelta(days=10)
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_bytes(cert.public_bytes(_PEM))
        key_path.write_bytes(
            key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cert_path, key_path


@dataclass
class Answer:
    """What the policy server answers; changed by tests between requests."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    location: str = ""
    trickle: float = 0.0  # seconds between bytes of the body
    endless: bool = False  # a body that never ends (chunks of 64 KiB until the client leaves)
    down: bool = False  # close the connection at once


class PolicyServer:
    """HTTPS on 127.0.0.1 with a certificate from `cert`/`key`, in its own thread."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.answer = Answer()
        self.answers: dict[str, Answer] = {}  # by Host (without port); default `answer`
        self.requests: list[str] = []  # Host headers seen
        self.sent_bytes = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PolicyServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.close()

        self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            host = ""
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("host:"):
                    host = line[5:].strip()
            self.requests.append(host)
            answer = self.answers.get(host.rsplit(":", 1)[0], self.answer)
            if answer.down:
                return
            headers = [f"HTTP/1.1 {answer.status} X", f"Content-Type: {answer.content_type}"]
            if answer.location:
                headers.append(f"Location: {answer.location}")
            if answer.endless:
                headers.append("Transfer-Encoding: chunked")
            else:
                headers.append(f"Content-Length: {len(answer.body)}")
            writer.write(("\r\n".join([*headers, "Connection: close"]) + "\r\n\r\n").encode())
            if answer.endless:
                chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
                for _ in range(10_000):  # 640 MiB at most
                    writer.write(chunk)
                    await writer.drain()
                    self.sent_bytes += 65536
            elif answer.trickle:
                for i in range(len(answer.body)):
                    writer.write(answer.body[i : i + 1])
                    await writer.drain()
                    self.sent_bytes += 1
                    await asyncio.sleep(answer.trickle)
            else:
                writer.write(answer.body)
                self.sent_bytes += len(answer.body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
