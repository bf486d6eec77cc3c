"""An in-memory SMTP server around the core: answers its events the way `server/smtp.py` and
the policy do, with a fixed directory instead of a store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp import session as core
from mailfort.protocol.smtp.data import SPOOL_THRESHOLD
from mailfort.protocol.smtp.envelope import Envelope, Recipient

USER, PASSWORD = "alice@example.test", "secret word"
LOCAL = {"alice@example.test", "bob@example.test"}
MAX_SIZE = 10_000
_REPLY = re.compile(rb"(\d{3})([ -])([^\r\n]*)\r\n")


def mx_config(**changes: object) -> core.SessionConfig:
    settings: dict[str, object] = {"hostname": "mx.test", "max_size": MAX_SIZE, "starttls": True}
    settings.update(changes)
    return core.SessionConfig(**settings)  # type: ignore[arg-type]


def submission_config(**changes: object) -> core.SessionConfig:
    return mx_config(auth=True, auth_required=True, **changes)


def replies(wire: bytes) -> list[tuple[int, str]]:
    """(code, text of the last line) of each whole reply in `wire`; every octet must be one."""
    found: list[tuple[int, str]] = []
    pos = 0
    while pos < len(wire):
        match = _REPLY.match(wire, pos)
        assert match is not None, f"not a reply line at {pos}: {wire[pos : pos + 80]!r}"
        pos = match.end()
        if match[2] == b" ":
            found.append((int(match[1]), match[3].decode()))
    return found


@dataclass
class Sink:
    """A spool file in memory (the server's is on disk)."""

    data: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes | bytearray) -> None:
        self.data += data


@dataclass
class Peer:
    """Feeds client octets to a core and plays the server and its policy for its events."""

    config: core.SessionConfig = field(default_factory=mx_config)
    core: core.ServerSession[str] = field(init=False)
    sent: bytearray = field(default_factory=bytearray)
    messages: list[tuple[Envelope[str], bytes]] = field(default_factory=list)
    logins: list[core.Login] = field(default_factory=list)
    events: list[core.Event] = field(default_factory=list)
    closed: bool = False
    handshakes: int = 0
    # With a threshold, messages past it go to a `Sink` (in `sinks`), as the server's spool.
    spool_threshold: int | None = None
    sinks: list[Sink] = field(default_factory=list)

    def __post_init__(self) -> None:
        spooling = self.spool_threshold is not None
        self.core = core.ServerSession(
            self.config,
            spool=self._open_sink if spooling else None,
            spool_threshold=self.spool_threshold or SPOOL_THRESHOLD,
        )
        self.sent += self.core.greeting()

    def _open_sink(self) -> Sink:
        self.sinks.append(Sink())
        return self.sinks[-1]

    def send(self, wire: bytes) -> bytes:
        """Feed `wire`, run until the core needs more; the octets the server sent meanwhile."""
        start = len(self.sent)
        self.core.receive_data(wire)
        self.run()
        return bytes(self.sent[start:])

    def codes(self, wire: bytes) -> list[int]:
        return [code for code, _ in replies(self.send(wire))]

    def run(self) -> None:
        session = self.core
        while True:
            event = session.next_event()
            self.events.append(event)
            if isinstance(event, core.NeedData):
                self.sent += session.take_output()
                return
            if isinstance(event, core.Close):
                self.sent += session.take_output()
                self.closed = True
                return
            if isinstance(event, core.Mail):
                sender = "" if event.address == "<>" else event.address.lower()
                session.mail_accepted(Envelope(sender=sender, params=event.params))
            elif isinstance(event, core.Rcpt):
                address = event.address.lower()
                if address in LOCAL:
                    session.rcpt_accepted(Recipient(address, f"inbox of {address}"))
                else:
                    session.refuse(R.UNKNOWN_USER)
            elif isinstance(event, core.Message):
                spooled = event.data.spooled
                content = bytes(spooled.data) if isinstance(spooled, Sink) else event.data.content
                self.messages.append((event.envelope, content))
                session.data_answer(R.queued(f"Q{len(self.messages)}"))
            elif isinstance(event, core.AuthStart):
                session.auth_proceed()
            elif isinstance(event, core.Login):
                self.logins.append(event)
                if (event.login, event.password) == (USER, PASSWORD) and not event.authzid:
                    session.login_succeeded(USER)
                else:
                    session.refuse(R.AUTH_FAILED)
            elif isinstance(event, core.StartTls):
                self.sent += session.take_output()
                self.handshakes += 1
                session.tls_started()


def same_however_cut(wire: bytes, pieces: list[bytes], config: core.SessionConfig) -> None:
    """A client's bytes may arrive in any pieces (TCP keeps no message boundaries): the core
    answers the same replies, takes the same messages and ends the same way from `pieces` (the
    octets of `wire`) as from `wire` in one."""
    whole = Peer(config)
    whole.send(wire)
    cut_up = Peer(config)
    for piece in pieces:
        cut_up.send(piece)
    assert bytes(cut_up.sent) == bytes(whole.sent)
    assert cut_up.messages == whole.messages
    assert cut_up.closed == whole.closed
