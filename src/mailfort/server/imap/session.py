"""One IMAP session: its state, what it shares with the node, and the untagged updates it owes.

The commands themselves live by the state they are allowed in (as mox keeps them): `anystate`,
`login`, `mailboxes`, `messages`; `dispatch` holds the one table that routes a command to its
handler in the states that allow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from mailfort.auth.login import Logins
from mailfort.errors import StoreError
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.protocol.imap import answers, response
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.answers import Answer
from mailfort.server.account_sessions import AccountSessions, SessionTicket
from mailfort.server.imap.cache import MetaCache, SnapshotCache
from mailfort.server.imap.fetch import flag_update
from mailfort.server.imap.selected import SelectedMailbox
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.offload import CpuPool
from mailfort.server.overload import OverloadGate
from mailfort.server.spool import Spool
from mailfort.status.notices import NoticeBoard
from mailfort.store.records import Account
from mailfort.store.roles import MailboxAccess

log = logging.getLogger("mailfort.imap")


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


BASE_CAPABILITIES = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
AUTHED_CAPABILITIES = (
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CONDSTORE",
    "ESEARCH",
    "SEARCHRES",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "CHILDREN",
    "STATUS=SIZE",
    "MULTIAPPEND",
    "BINARY",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "UTF8=ACCEPT",
)


class SessionIO(Protocol):
    """What a session needs from its connection."""

    client_ip: str
    tls: bool
    closing: asyncio.Event  # set when the node drains: IDLE ends with BYE
    blocked: float  # seconds `send` has waited for the client to read, in all

    async def send(self, data: bytes) -> None: ...

    async def read_line(self, timeout: float) -> bytes | None: ...

    async def start_tls(self) -> None: ...


@dataclass
class ImapContext:
    """Everything a session shares with the rest of the node."""

    store: MailboxAccess
    auth: Logins
    cache: MetaCache
    hostname: str
    max_message_size: int
    allow_plaintext_loopback: bool = False
    # Polls for changes made outside this process (CLI, other nodes) at most this often.
    poll_interval: float = 2.0
    clock: Callable[[], float] = time.monotonic
    logins: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    snapshots: SnapshotCache = field(default_factory=SnapshotCache)
    # Status notices: an incident touching IMAP is named in an [ALERT] at login.
    notices: NoticeBoard | None = None
    gate: OverloadGate | None = None
    metrics: NodeMetrics | None = None
    networks: Networks = field(default_factory=Networks)
    # Threads for parsing and searching message bodies off the event loop.
    cpu: CpuPool = field(default_factory=CpuPool)
    # Large APPEND literals go to the spool as they arrive (None: kept in memory); reading
    # them back for the store write takes from the node's memory budget.
    spool: Spool | None = None
    memory: MemoryBudget = field(default_factory=lambda: MemoryBudget(64 * 1024 * 1024))
    # Logged-in sessions per account on this node, shared with POP3 and submission.
    sessions: AccountSessions = field(default_factory=lambda: AccountSessions(50))


# A handler that already sent its tagged answer (STARTTLS must answer before the handshake).
ANSWERED: Final = Answer(status="")
# A handler that ended the session with an untagged BYE and no tagged answer.
HUNG_UP: Final = Answer(status="BYE")


class CommandError(Exception):
    """Raised from deep in a handler: the command ends with `answer`."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.text)
        self.answer = answer


Handler = Callable[["Session", C.Command], Awaitable[Answer]]


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


class Session:
    def __init__(self, ctx: ImapContext, io: SessionIO) -> None:
        self.ctx = ctx
        self.io = io
        self.state = State.NOT_AUTHENTICATED
        # The client's network: its commands hold at most its share of the overload gate.
        self.network = ctx.networks.of(io.client_ip)
        self.account: Account | None = None
        self.ticket: SessionTicket | None = None  # this session's place among its account's
        self.selected: SelectedMailbox | None = None
        self.enabled: set[str] = set()
        self.condstore = False
        self._last_poll = 0.0
        self._change_event: asyncio.Event | None = None

    # -- capabilities -------------------------------------------------------------------------
    @property
    def utf8(self) -> bool:
        return bool({"UTF8=ACCEPT", "IMAP4REV2"} & self.enabled)

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    def plaintext_ok(self) -> bool:
        return self.io.tls or (
            self.ctx.allow_plaintext_loopback and _is_loopback(self.io.client_ip)
        )

    def capabilities(self) -> str:
        caps = list(BASE_CAPABILITIES)
        if self.state is State.NOT_AUTHENTICATED:
            if not self.io.tls:
                caps.append("STARTTLS")
            if self.plaintext_ok():
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        else:
            caps.extend(AUTHED_CAPABILITIES)
            caps.append(f"APPENDLIMIT={self.ctx.max_message_size}")
        return " ".join(caps)

    # -- plumbing -----------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        await self.io.send(data)

    async def report_write(self, command: str) -> bool:
        """Send the untagged answers a committed write owes before its tagged OK (EXPUNGE, MOVE:
        RFC 9051 6.4.3, RFC 6851 3.3). When the store fails now, the write has happened but
        cannot be reported: a tagged NO would say it had not, an OK without its EXPUNGEs would
        leave the client's view wrong, so the session ends with BYE and no tagged answer (the
        client sees the outcome as unknown and resynchronises). False then: return HUNG_UP."""
        try:
            await self.sync(allow_expunge=True, force=True)
        except StoreError as exc:
            log.warning("event=imap_unreported_write command=%s error=%r", command, exc)
            await self.send(answers.BYE_UNREPORTED)
            return False
        return True

    async def greet(self) -> None:
        await self.send(answers.greeting(self.ctx.hostname, self.capabilities()))

    async def tagged(self, tag: str, answer: Answer) -> None:
        await self.io.send(answer.line(tag))

    # -- change tracking ----------------------------------------------------------------------
    def watch(self, mailbox_id: int | None) -> None:
        hub = self.ctx.store.hub
        if self._change_event is not None and self.selected is not None:
            hub.unsubscribe(self.selected.mailbox_id, self._change_event)
            self._change_event = None
        if mailbox_id is not None:
            self._change_event = hub.subscribe(mailbox_id)

    def end(self) -> None:
        """The connection is gone: stop watching, give the account's session place back."""
        self.watch(None)
        if self.ticket is not None:
            self.ticket.close()

    def close_selected(self) -> None:
        self.watch(None)
        self.selected = None
        self.state = State.AUTHENTICATED

    def changed(self) -> bool:
        event = self._change_event
        return event is not None and event.is_set()

    async def wait_change(self, timeout: float) -> None:
        event = self._change_event
        if event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def sync(self, *, allow_expunge: bool, force: bool = False) -> None:
        """Send the untagged updates (EXPUNGE, EXISTS, FETCH FLAGS) other sessions caused."""
        sel = self.selected
        if sel is None or self.account is None:
            return
        now = self.ctx.clock()
        stale = now - self._last_poll >= self.ctx.poll_interval
        if not (force or stale or self.changed() or (allow_expunge and sel.pending_expunge)):
            return
        if self._change_event is not None:
            self._change_event.clear()
        self._last_poll = now
        changes = await self.ctx.store.changes(self.account.id, sel.mailbox_id, sel.highestmodseq)
        if changes is None:
            # The mailbox was deleted under us (RFC 9051 7.1: BYE is the usual answer).
            await self.send(answers.BYE_MAILBOX_DELETED)
            self.state = State.LOGOUT
            return
        expunged, exists, flag_rows = sel.apply(changes, allow_expunge=allow_expunge)
        out = [response.expunge(seq) for seq in expunged]
        if exists is not None:
            out.append(response.exists(exists))
            if not self.rev2:
                out.append(response.recent(0))
        for row in flag_rows:
            out.append(flag_update(sel.seq(row.uid), row, uid=True, modseq=self.condstore))
        if out:
            await self.send(b"".join(out))
