"""An in-memory POP3 server around the core: answers its events the way `server/pop3.py` does."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailfort.protocol.pop3 import session as core
from mailfort.protocol.pop3.maildrop import Entry, Maildrop
from mailfort.protocol.pop3.response import wire_size

USER, PASSWORD = "alice@example.test", "secret word"
UIDVALIDITY = 1700000000

MESSAGES: dict[int, bytes] = {
    3: b"Subject: one\r\n\r\nhello\r\n",
    7: b"Subject: two\r\n\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n",
    9: b"Subject: bare\n\nlf only\nno final line end",
}


def maildrop(messages: dict[int, bytes] | None = None) -> Maildrop:
    messages = MESSAGES if messages is None else messages
    return Maildrop(
        [
            Entry(uid=uid, size=wire_size(data), unique_id=f"{UIDVALIDITY}.{uid}")
            for uid, data in sorted(messages.items())
        ]
    )


@dataclass
class Peer:
    """Feeds client octets to a core and plays the server for its events."""

    tls: bool = True
    plaintext_without_tls: bool = False
    messages: dict[int, bytes] = field(default_factory=lambda: dict(MESSAGES))
    in_use: bool = False
    core: core.Session = field(init=False)
    sent: bytearray = field(default_factory=bytearray)
    updates: list[tuple[int, ...]] = field(default_factory=list)
    logins: list[core.Login] = field(default_factory=list)
    closed: bool = False
    handshakes: int = 0

    def __post_init__(self) -> None:
        self.core = core.Session(
            core.SessionConfig(
                hostname="mx.test",
                tls=self.tls,
                plaintext_without_tls=self.plaintext_without_tls,
                max_unauth_commands=20,
                max_errors=20,
            )
        )
        self.sent += self.core.greeting()

    def send(self, wire: bytes) -> bytes:
        """Feed `wire`, run until the core needs more; the octets the server sent meanwhile."""
        start = len(self.sent)
        self.core.receive_data(wire)
        self.run()
        return bytes(self.sent[start:])

    def run(self) -> None:
        while True:
            event = self.core.next_event()
            if isinstance(event, core.Send):
                self.sent += event.data
            elif isinstance(event, core.NeedData):
                return
            elif isinstance(event, core.Close):
                self.closed = True
                return
            elif isinstance(event, core.Login):
                self.logins.append(event)
                if event.user != USER or event.password != PASSWORD:
                    self.sent += self.core.login_failed(core.LoginFailure.CREDENTIALS)
                elif self.in_use:
                    self.sent += self.core.login_failed(core.LoginFailure.IN_USE)
                else:
                    self.sent += self.core.login_succeeded(maildrop(self.messages))
            elif isinstance(event, core.Retrieve):
                data = self.messages.get(event.uid)
                if data is None:
                    self.sent += self.core.message_gone()
                else:
                    self.sent += b"".join(self.core.message(data))
            elif isinstance(event, core.StartTls):
                self.sent += event.reply
                self.handshakes += 1
                self.core.tls_started()
            elif isinstance(event, core.Update):
                self.updates.append(event.uids)
                for uid in event.uids:
                    self.messages.pop(uid, None)
                self.sent += self.core.updated(True)

    def login(self) -> bytes:
        return self.send(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())


def unstuff(multiline: bytes) -> bytes:
    """The body of a multi-line response (status line and terminator off), dot-stuffing undone."""
    status, sep, rest = multiline.partition(b"\r\n")
    assert sep and status.startswith(b"+OK"), multiline[:80]
    assert rest.endswith(b"\r\n.\r\n") or rest == b".\r\n", rest[-20:]
    body = rest[: -len(b".\r\n")]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
