"""Helpers for the POP3 tests: poplib sessions, byte-level access, the store and IMAP views."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time

import pytest
from argon2 import PasswordHasher

from mailfort.store.records import AppendItem
from mailfort.store.sqlite import SqliteStore
from tests.conftest import PASSWORD
from tests.nodeproc import NodeProcess
from tests.rawclient import RawClient, client_tls


def start_pop3_node(
    tmp_path_factory: pytest.TempPathFactory, users: list[str], extra_config: str = ""
) -> NodeProcess:
    """A started node with `users` (password PASSWORD) in example.test.

    Their hashes are Argon2id with the smallest cost: verifying stays the node's real code
    path (parameters travel in the hash) but takes a millisecond, not a busy CPU's second."""
    node = NodeProcess(tmp_path_factory.mktemp("pop3node"), extra_config=extra_config)
    node.provision(domains=("example.test",))
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)

    async def add(store: SqliteStore) -> None:
        for address in users:
            await store.add_account(address, cheap)

    node._query(add)
    return node.start()


def deliver(node: NodeProcess, to: str, message: bytes) -> None:
    """Deliver over the node's SMTP port (a local recipient is in its INBOX at the 250)."""
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        assert client.sendmail("sender@remote.test", [to], message) == {}


def append(node: NodeProcess, address: str, data: bytes) -> int:
    """Store `data` as it is (bare LFs and all, as IMAP APPEND may) in the INBOX; its UID."""

    async def run(store: SqliteStore) -> int:
        account = await store.get_account(address)
        assert account is not None
        item = AppendItem(data=data, internal_date=time.time())
        return (await store.append(account.id, "INBOX", [item])).uids[0]

    return node._query(run)  # type: ignore[no-any-return]


def stls(node: NodeProcess, user: str | None, password: str = PASSWORD) -> poplib.POP3:
    """poplib on the STLS port, after STLS, logged in as `user` (not logged in when None)."""
    client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=30)
    client.stls(client_tls())
    if user is not None:
        client.user(user)
        client.pass_(password)
    return client


def pop3s(node: NodeProcess, user: str | None, password: str = PASSWORD) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls(), timeout=30)
    if user is not None:
        client.user(user)
        client.pass_(password)
    return client


def retr(client: poplib.POP3, number: int) -> tuple[bytes, int]:
    """The message as the server sent it, dot-stuffing undone (poplib does that), and its octets."""
    _, lines, octets = client.retr(number)
    return b"".join(line + b"\r\n" for line in lines), octets


def uidl(client: poplib.POP3) -> list[str]:
    _, lines, _ = client.uidl()
    return [line.split()[1].decode() for line in lines]


def sizes(client: poplib.POP3) -> list[int]:
    _, lines, _ = client.list()
    return [int(line.split()[1]) for line in lines]


def imap_unique_ids(node: NodeProcess, user: str) -> list[str]:
    """ "<UIDVALIDITY>.<UID>" of every INBOX message, as an IMAP client sees them."""
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls())
    try:
        client.login(user, PASSWORD)
        typ, _ = client.select("INBOX", readonly=True)
        assert typ == "OK"
        _, data = client.response("UIDVALIDITY")
        uidvalidity = int(data[0])  # type: ignore[arg-type]
        typ, found = client.uid("SEARCH", "ALL")
        assert typ == "OK"
        uids = [int(u) for u in found[0].split()]  # type: ignore[union-attr]
        return [f"{uidvalidity}.{uid}" for uid in uids]
    finally:
        client.logout()


class RawPop3(RawClient):
    """Sends exactly what it is given; reads lines and multi-line responses as bytes."""

    def __init__(self, port: int, *, tls: bool = True, timeout: float = 10.0) -> None:
        super().__init__(port, tls=tls, timeout=timeout)
        self.greeting = self.line()

    def starttls(self) -> None:
        self.sock = client_tls().wrap_socket(self.sock)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def multiline(self) -> bytes:
        """The rest of a multi-line response after its status line, as sent (still stuffed)."""
        while b"\r\n.\r\n" not in b"\r\n" + self.buffer:
            self._fill()
        if self.buffer.startswith(b".\r\n"):
            self.buffer = self.buffer[3:]
            return b""
        body, _, self.buffer = self.buffer.partition(b"\r\n.\r\n")
        return body + b"\r\n"

    def command(self, text: bytes) -> bytes:
        self.send(text + b"\r\n")
        return self.line()

    def login(self, user: str, password: str = PASSWORD) -> None:
        assert self.command(b"USER " + user.encode()).startswith(b"+OK")
        reply = self.command(b"PASS " + password.encode())
        assert reply.startswith(b"+OK"), reply


TRACE = re.compile(rb"Traceback|File \"")
