"""A byte-level client socket for protocol tests: sends exactly what it is given, buffers what
comes back. IMAP and POP3 test clients add their own framing on top."""

from __future__ import annotations

import socket
import ssl
from typing import Self


def client_tls() -> ssl.SSLContext:
    """A client context that accepts the node's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    def __init__(
        self, port: int, *, tls: bool = True, source: str = "127.0.0.1", timeout: float = 10.0
    ) -> None:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.sock: socket.socket = client_tls().wrap_socket(sock) if tls else sock
        self.buffer = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unread: {self.buffer!r}")
        self.buffer += chunk

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` (what it sent is kept
        in the buffer)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
