"""A test certificate authority written to files, and an HTTPS server on loopback that plays an
MTA-STS policy host, with the faults a policy host can have: down, slow, huge, redirecting.

`TestCa(dir)` writes `ca.pem`; `issue(dir, names)` writes `cert.pem`/`key.pem` signed by it into
`dir` (where `tests.smtpsink.Sink(tls_dir=dir)` picks them up), optionally expired. The node and
the client under test trust `ca.pem` through `[delivery] tls_ca_file`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.certificates import issue


class TestCa:
    """A CA (`tests.certificates`) whose certificate is written to `ca_file`."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.issued = issue(())
        self.cert = self.issued.cert
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_text(self.issued.cert_pem)

    def issue(
        self, directory: Path, names: Sequence[str], *, expired: bool = False
    ) -> tuple[Path, Path]:
        """`cert.pem` and `key.pem` in `directory` for `names` (and 127.0.0.1), signed by the
        CA; `expired`: its end was ten days ago."""
        directory.mkdir(parents=True, exist_ok=True)
        ends, since = (-10, 20) if expired else (10, 1)
        leaf = issue((*names, "127.0.0.1"), days=ends, since=since, by=self.issued)
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_text(leaf.cert_pem)
        key_path.write_text(leaf.key_pem)
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
