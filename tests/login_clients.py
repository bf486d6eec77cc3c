"""Password logins from a chosen source address, one per protocol, answering what the node said.

Every client binds its socket to `source` (a 127.x.y.z address), so that tests can play clients
from several networks on one machine: the node counts failed logins per address and per /24.
Each call is one fresh connection; the answer is the node's own line (or the status code). A
connection the node refuses at connect answers with its refusal (`* BYE`, `-ERR`, 421, 503).
"""

from __future__ import annotations

import base64
import smtplib
import socket

from tests.conftest import RawImap
from tests.rawclient import RawClient, client_tls


def imap(
    port: int, source: str, user: str, password: str, *, tls: bool = True, timeout: float = 30.0
) -> bytes:
    """LOGIN (over implicit TLS, or in plain text where the node allows it): the tagged answer."""
    with RawImap(port, source=source, tls=tls, timeout=timeout) as raw:
        if raw.greeting.startswith(b"* BYE"):
            return raw.greeting
        _, done = raw.command(f'LOGIN "{user}" "{password}"')
        return done


class RawPop3(RawClient):
    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


def pop3(
    port: int, source: str, user: str, password: str, *, tls: bool = True, timeout: float = 30.0
) -> bytes:
    """USER/PASS (over implicit TLS, or in plain text where the node allows it): the answer to
    PASS."""
    with RawPop3(port, source=source, tls=tls, timeout=timeout) as raw:
        greeting = raw.line()
        if greeting.startswith(b"-ERR"):
            return greeting
        raw.send(f"USER {user}\r\nPASS {password}\r\n")
        raw.line()
        return raw.line()


def submission(
    port: int, source: str, user: str, password: str, *, timeout: float = 30.0
) -> tuple[int, bytes]:
    """AUTH PLAIN after STARTTLS: the reply code and text."""
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code, exc.smtp_error
    with client:
        client.starttls(context=client_tls())
        client.ehlo("client.test")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return client.docmd("AUTH", f"PLAIN {token}")


def account(port: int, source: str, user: str, password: str, *, timeout: float = 30.0) -> int:
    """GET /api/account.json with HTTP Basic: the status code."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = (
        f"GET /api/account.json HTTP/1.1\r\nHost: status.test\r\nAuthorization: Basic {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0)) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])
