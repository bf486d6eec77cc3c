"""Talking to a node's listeners as a stranger would: connect, read the greeting, ask for TLS,
try to relay. Every step is bounded by one timeout; failures come back as `ProbeError` with a
sentence for the operator."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from cryptography import x509

MAX_REPLY_LINES = 100  # an SMTP reply longer than this is not one our node sends
IMPLICIT_TLS = ("submissions", "imaps", "pop3s")
# What each listener says first (RFC 5321 4.2, RFC 9051 7.1, RFC 1939 4).
GREETINGS = {
    "smtp": "220",
    "submission": "220",
    "submissions": "220",
    "imap": "* OK",
    "imaps": "* OK",
    "pop3": "+OK",
    "pop3s": "+OK",
}


class ProbeError(Exception):
    """A listener did not do what a client needs; `str()` says what happened."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    name: str  # the listener: smtp, submission, ..., http
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where to connect: a listener on every address is reached on loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)


def unverified() -> ssl.SSLContext:
    """A client context that accepts any certificate: the doctor judges it itself."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Conversation:
    """One connection to a listener, line by line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def open(
        cls, endpoint: Endpoint, timeout: float, tls: ssl.SSLContext | None = None
    ) -> Conversation:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    endpoint.connect_host,
                    endpoint.port,
                    ssl=tls,
                    server_hostname=endpoint.connect_host if tls else None,
                )
        except TimeoutError:
            raise ProbeError(f"no connection to {endpoint.address} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"cannot connect to {endpoint.address}: {exc}") from None
        return cls(reader, writer, timeout)

    async def line(self) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self.reader.readline()
        except TimeoutError:
            raise ProbeError(f"no answer within {self.timeout:g} s") from None
        except (OSError, ValueError, ssl.SSLError) as exc:  # ValueError: a line past the limit
            raise ProbeError(f"connection failed: {exc}") from None
        if not raw:
            raise ProbeError("the connection was closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def reply(self) -> str:
        """One SMTP reply, its lines joined (RFC 5321 4.2: "250-" continues, "250 " ends)."""
        lines = [await self.line()]
        while lines[-1][3:4] == "-" and len(lines) < MAX_REPLY_LINES:
            lines.append(await self.line())
        return " / ".join(lines)

    async def command(self, text: str) -> str:
        self.writer.write(text.encode() + b"\r\n")
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except (TimeoutError, OSError) as exc:
            raise ProbeError(f"cannot send {text.split()[0]}: {exc}") from None
        return await self.reply()

    async def start_tls(self, context: ssl.SSLContext, hostname: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.start_tls(context, server_hostname=hostname)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise ProbeError(f"TLS handshake failed: {exc or 'timeout'}") from None

    def peer_certificate(self) -> x509.Certificate | None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return x509.load_der_x509_certificate(der) if der else None

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass


async def greeting(endpoint: Endpoint, timeout: float) -> str:
    """Connect and read what the listener says first; ProbeError unless it is its greeting."""
    tls = unverified() if endpoint.name in IMPLICIT_TLS else None
    talk = await Conversation.open(endpoint, timeout, tls)
    try:
        if endpoint.name == "http":
            first = await talk.command("HEAD / HTTP/1.0\r\n")
            expected = "HTTP/"
        else:
            first = await talk.line()
            expected = GREETINGS[endpoint.name]
        if not first.startswith(expected):
            raise ProbeError(f"answered {first[:120]!r}, not {expected!r}")
        return first[:120]
    finally:
        await talk.close()


async def certificate(endpoint: Endpoint, hostname: str, timeout: float) -> x509.Certificate:
    """The certificate a client of `endpoint` is shown: after STARTTLS on smtp/submission, at
    once on an implicit-TLS listener."""
    implicit = endpoint.name in IMPLICIT_TLS
    talk = await Conversation.open(endpoint, timeout, unverified() if implicit else None)
    try:
        if not implicit:
            await talk.reply()
            await talk.command(f"EHLO {hostname}")
            answer = await talk.command("STARTTLS")
            if not answer.startswith("220"):
                raise ProbeError(f"STARTTLS refused: {answer[:120]}")
            await talk.start_tls(unverified(), hostname)
        found = talk.peer_certificate()
        if found is None:
            raise ProbeError("no certificate was shown")
        return found
    finally:
        await talk.close()


async def verifies(endpoint: Endpoint, hostname: str, timeout: float) -> str:
    """ "" when a client that checks certificates (the system's trust store, `hostname`) accepts
    the one `endpoint` shows; else why not."""
    implicit = endpoint.name in IMPLICIT_TLS
    context = ssl.create_default_context()
    try:
        if implicit:
            talk = await Conversation.open(endpoint, timeout)
            await talk.start_tls(context, hostname)
        else:
            talk = await Conversation.open(endpoint, timeout)
            await talk.reply()
            await talk.command(f"EHLO {hostname}")
            await talk.command("STARTTLS")
            await talk.start_tls(context, hostname)
    except ProbeError as exc:
        return str(exc)
    await talk.close()
    return ""


async def relay_attempt(endpoint: Endpoint, sender: str, recipient: str, timeout: float) -> str:
    """The reply to an unauthenticated `RCPT TO:<recipient>` after `MAIL FROM:<sender>`, as a
    stranger on the internet gets it (RFC 5321 3.6.2: only local recipients, or an open relay)."""
    talk = await Conversation.open(endpoint, timeout)
    try:
        await talk.reply()
        await talk.command("EHLO doctor.invalid")
        mail = await talk.command(f"MAIL FROM:<{sender}>")
        if not mail.startswith("250"):
            raise ProbeError(f"MAIL FROM:<{sender}> was refused ({mail[:120]}): cannot tell")
        answer = await talk.command(f"RCPT TO:<{recipient}>")
        await talk.command("QUIT")
        return answer[:200]
    finally:
        await talk.close()
