"""IMAP and POP3 as a measurement's clients speak them: plaintext on loopback, a few commands.

Minimal on purpose (RFC 9051 / RFC 1939 subsets): every reply is read to its end, so the node
does all its work for a command before the next one is counted.
"""

from __future__ import annotations

import asyncio
import contextlib


class ClientError(Exception):
    pass


class InUse(ClientError):
    """POP3 -ERR [IN-USE] (RFC 3206): another session holds the maildrop."""


class Imap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tag = 0

    @classmethod
    async def login(cls, port: int, user: str, password: str, *, select: bool = True) -> Imap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise ClientError(f"IMAP greeting {greeting[:60]!r}")
        await client.command(f'LOGIN "{user}" "{password}"')
        if select:
            await client.command("SELECT INBOX")
        return client

    async def command(self, text: str) -> list[bytes]:
        """Send one command; the untagged lines before its tagged OK (else ClientError)."""
        self.tag += 1
        tag = f"m{self.tag}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ClientError(f"IMAP connection closed during {text.split()[0]}")
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise ClientError(f"IMAP {text.split()[0]}: {line.strip()[:80]!r}")
                return lines
            lines.append(line)

    async def logout(self) -> None:
        with contextlib.suppress(ClientError, OSError):
            await self.command("LOGOUT")
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Pop3:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def login(cls, port: int, user: str, password: str) -> Pop3:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        try:
            await client._ok(await reader.readline(), "greeting")
            await client.command(f"USER {user}")
            await client.command(f"PASS {password}")
        except BaseException:
            writer.close()
            raise
        return client

    async def _ok(self, line: bytes, what: str) -> bytes:
        if line.startswith(b"-ERR [IN-USE]"):
            raise InUse(f"POP3 {what}: {line.strip()[:80]!r}")
        if not line.startswith(b"+OK"):
            raise ClientError(f"POP3 {what}: {line.strip()[:80]!r}")
        return line

    async def command(self, text: str, *, multiline: bool = False) -> list[bytes]:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        lines = [await self._ok(await self.reader.readline(), text.split()[0])]
        while multiline:
            line = await self.reader.readline()
            if line in (b".\r\n", b""):
                break
            lines.append(line)
        return lines

    async def quit(self) -> None:
        with contextlib.suppress(ClientError, OSError):
            await self.command("QUIT")
            # The node closes after its +OK, once it has ended the session (RFC 1939 6: the
            # UPDATE state, the maildrop's lock released): the next session may then take it.
            await asyncio.wait_for(self.reader.read(), 5)
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
