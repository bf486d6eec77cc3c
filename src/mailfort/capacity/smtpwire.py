"""Both ends of SMTP as a measurement needs them: a load client and a remote MX that swallows.

Minimal on purpose (RFC 5321 without extensions): what they cost in the measuring process is
not what is measured, but on a small machine they share the cores with the node, so they do
little more than move bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


class SmtpReplyError(Exception):
    pass


async def read_reply(reader: asyncio.StreamReader) -> int:
    """The code of one (possibly multiline) reply; 421 on a closed connection."""
    while True:
        line = await reader.readline()
        if not line:
            return 421
        if len(line) < 4 or not line[:3].isdigit():
            raise SmtpReplyError(f"not an SMTP reply: {line[:60]!r}")
        if line[3:4] != b"-":
            return int(line[:3])


def dot_stuffed(body: bytes) -> bytes:
    """The DATA payload for `body` (CRLF lines), RFC 5321 4.5.2, with the final dot."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpClient:
    """One connection that sends message after message (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, *, helo: str = "load.test") -> SmtpClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        code = await read_reply(reader)
        if code == 220:
            code = await client.command(f"EHLO {helo}")
        if code != 250:
            client.abort()
            raise SmtpReplyError(f"{host}:{port} greeted with {code}")
        return client

    async def command(self, line: str) -> int:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await read_reply(self.reader)

    async def send(self, sender: str, recipient: str, payload: bytes) -> int:
        """One transaction; `payload` as dot_stuffed() made it. The first code that is not a
        success (a 4xx refusal, 421 when the node closed), or 250 for the message accepted.

        MAIL, RCPT and DATA go in one write (RFC 2920 PIPELINING, which mailfort offers and
        Postfix and other MTAs use): a round trip per command would make the client, not the
        node, the bottleneck of a saturation test on a small machine."""
        self.writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        await self.writer.drain()
        mail = await read_reply(self.reader)
        rcpt = await read_reply(self.reader)
        data = await read_reply(self.reader)
        if data != 354:
            # RFC 2920 3.1: without a recipient the server refuses DATA and no payload follows.
            for code in (mail, rcpt, data):
                if code not in (250, 251):
                    return code
            return data
        self.writer.write(payload)
        await self.writer.drain()
        code = await read_reply(self.reader)
        if mail != 250 or rcpt not in (250, 251):
            return mail if mail != 250 else rcpt  # a server that took DATA anyway
        return code

    def abort(self) -> None:
        self.writer.close()

    async def close(self) -> None:
        with contextlib.suppress(OSError, SmtpReplyError, asyncio.TimeoutError):
            await asyncio.wait_for(self.command("QUIT"), 5)
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@dataclass
class SinkCounts:
    connections: int = 0
    messages: int = 0
    recipients: int = 0


class Sink:
    """A remote MX on loopback that answers 250 to everything. Behind its gate (closed at
    start) a connection gets no greeting, so a node's deliveries wait at the connect until
    `open()`: the CPU counted from then on is delivery alone."""

    def __init__(self) -> None:
        self.counts = SinkCounts()
        self.gate = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1") -> Sink:
        self.server = await asyncio.start_server(self._serve, host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def open(self) -> None:
        self.gate.set()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        try:
            await self.gate.wait()
            writer.write(b"220 sink.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    self.counts.messages += 1
                    writer.write(b"250 2.0.0 taken\r\n")
                elif verb == b"RCPT":
                    self.counts.recipients += 1
                    writer.write(b"250 2.1.5 ok\r\n")
                elif verb == b"EHLO":
                    writer.write(b"250-sink.test\r\n250 8BITMIME\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
