"""One IMAP session: its state machine, dispatch, untagged updates, and the commands of any state.

Commands are grouped by the state they are allowed in (as mox does): this module holds the
any-state and not-authenticated commands; `mailboxes.py` the authenticated ones; `messages.py`
the selected ones. Which command runs in which state is one table, `ALLOWED`; a command outside
it gets BAD, never a crash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from mailfort import __version__
from mailfort.auth.login import Logins, Outcome
from mailfort.errors import CommitInDoubt, NotFound, OverQuota, StoreError, StoreUnavailable
from mailfort.metrics import NodeMetrics
from mailfort.network import Networks
from mailfort.protocol.imap import commands as C
from mailfort.server.account_sessions import AccountSessions, SessionTicket
from mailfort.server.imap.cache import MetaCache, SnapshotCache
from mailfort.server.imap.flags import FlagError
from mailfort.server.imap.names import NameError_
from mailfort.server.imap.selected import SelectedMailbox
from mailfort.server.memory_budget import MemoryBudget
from mailfort.server.offload import CpuPool
from mailfort.server.overload import OverloadGate
from mailfort.server.spool import Spool
from mailfort.status.components import Component
from mailfort.status.notices import NoticeBoard
from mailfort.store.records import Account, MessageRow
from mailfort.store.roles import MailboxAccess

log = logging.getLogger("mailfort.imap")


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset(State) - {State.LOGOUT}
AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

ALLOWED: dict[type[C.Command], frozenset[State]] = {
    C.Capability: ANY,
    C.Noop: ANY,
    C.Logout: ANY,
    C.Id: ANY,
    C.StartTLS: frozenset({State.NOT_AUTHENTICATED}),
    C.Login: frozenset({State.NOT_AUTHENTICATED}),
    C.Authenticate: frozenset({State.NOT_AUTHENTICATED}),
    C.Enable: AUTHED,
    C.Select: AUTHED,
    C.Create: AUTHED,
    C.Delete: AUTHED,
    C.Rename: AUTHED,
    C.Subscribe: AUTHED,
    C.ListCmd: AUTHED,
    C.Namespace: AUTHED,
    C.Status: AUTHED,
    C.Append: AUTHED,
    C.Idle: AUTHED,
    C.GetQuota: AUTHED,
    C.GetQuotaRoot: AUTHED,
    C.SetQuota: AUTHED,
    C.Check: SELECTED,
    C.Close: SELECTED,
    C.Unselect: SELECTED,
    C.Expunge: SELECTED,
    C.Search: SELECTED,
    C.Fetch: SELECTED,
    C.StoreCmd: SELECTED,
    C.Copy: SELECTED,
}

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
ENABLEABLE = frozenset({"CONDSTORE", "UTF8=ACCEPT", "IMAP4REV2"})

# Commands that run without a slot in the overload gate: they do not touch the store (or, like
# NOOP and IDLE, only to look for changes), and refusing them would only make clients reconnect.
# LOGIN and AUTHENTICATE take a slot themselves for their store read only (`auth/login.py`):
# the SASL exchange waits on the client, the password check has its own bound, and a failure's
# delay is the client's time; none of it is store latency.
UNGATED: frozenset[type[C.Command]] = frozenset(
    {
        C.Capability,
        C.Noop,
        C.Check,
        C.Logout,
        C.Id,
        C.StartTLS,
        C.Enable,
        C.Namespace,
        C.Idle,
        C.Login,
        C.Authenticate,
    }
)
BUSY = "server busy, try again later"


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


@dataclass(frozen=True, slots=True)
class Done:
    """The tagged answer of a command."""

    status: str = "OK"
    text: str = "done"
    code: str | None = None


# A handler that already sent its tagged answer (STARTTLS must answer before the handshake).
ANSWERED = Done(status="")
# A handler that ended the session with an untagged BYE and no tagged answer.
HUNG_UP = Done(status="BYE")


class CommandError(Exception):
    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.done = Done(status, text, code)


Handler = Callable[["Session", C.Command], Awaitable[Done]]
HANDLERS: dict[type[C.Command], Handler] = {}


def handles(*types: type[C.Command]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn

    return register


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
            await self.untagged("BYE [UNAVAILABLE] done, but it cannot be shown now: reconnect")
            return False
        return True

    async def untagged(self, text: str) -> None:
        await self.io.send(b"* " + text.encode("utf-8", "surrogateescape") + b"\r\n")

    async def greet(self) -> None:
        await self.untagged(
            f"OK [CAPABILITY {self.capabilities()}] {self.ctx.hostname} mailfort IMAP ready"
        )

    async def handle(self, cmd: C.Command) -> bool:
        """Run one command; False when the session is over (LOGOUT)."""
        allowed = ALLOWED.get(type(cmd))
        handler = HANDLERS.get(type(cmd))
        if allowed is None or handler is None:
            await self.tagged(cmd.tag, Done("BAD", f"{cmd.name} is not supported"))
            return True
        if self.state not in allowed:
            await self.tagged(
                cmd.tag, Done("BAD", f"{cmd.name} is not allowed in the {self.state.value} state")
            )
            return True
        token = None
        gate = self.ctx.gate
        blocked = self.io.blocked
        if gate is not None and type(cmd) not in UNGATED:
            token = gate.try_acquire("imap", self.network)
            if token is None:
                await self.tagged(cmd.tag, Done("NO", BUSY, "UNAVAILABLE"))
                return True
        ok = True
        try:
            done = await handler(self, cmd)
        except CommandError as exc:
            done = exc.done
        except NameError_ as exc:
            done = Done("NO", str(exc), "CANNOT")
        except FlagError as exc:
            done = Done("BAD", str(exc))
        except OverQuota:
            done = Done("NO", "quota exceeded", "OVERQUOTA")
        except NotFound as exc:
            done = Done("NO", str(exc) or "no such mailbox", "NONEXISTENT")
        except CommitInDoubt as exc:
            # The write may have happened: NO would say it had not. The session ends without a
            # tagged answer, as after a crash, and the client resynchronises.
            log.warning("event=imap_write_in_doubt command=%s error=%s", cmd.name, exc)
            await self.untagged("BYE [UNAVAILABLE] whether that was done is unknown: reconnect")
            done = HUNG_UP
            ok = False
        except StoreUnavailable:
            log.warning("event=imap_store_unavailable command=%s", cmd.name)
            done = Done("NO", "temporarily unavailable, try again later", "UNAVAILABLE")
            ok = False
        except StoreError as exc:
            log.warning("event=imap_store_error command=%s error=%s", cmd.name, exc)
            done = Done("NO", "temporarily unavailable, try again later", "UNAVAILABLE")
            ok = False
        finally:
            if token is not None and gate is not None:
                gate.release(token, ok, client_wait=self.io.blocked - blocked)
        if done is ANSWERED:
            return True
        if done is HUNG_UP:
            return False
        if self.state is State.LOGOUT:
            await self.tagged(cmd.tag, done)
            return False
        if self.selected is not None and not isinstance(cmd, C.Logout):
            allow_expunge = cmd.uid or not isinstance(cmd, C.Fetch | C.StoreCmd | C.Search)
            # On a store error the updates simply come with the next command.
            with contextlib.suppress(StoreError):
                await self.sync(
                    allow_expunge=allow_expunge, force=isinstance(cmd, C.Noop | C.Check)
                )
        await self.tagged(cmd.tag, done)
        return True

    async def tagged(self, tag: str, done: Done) -> None:
        code = f"[{done.code}] " if done.code else ""
        await self.io.send(f"{tag} {done.status} {code}{done.text}\r\n".encode("utf-8", "replace"))

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
            await self.untagged("BYE [CLIENTBUG] the selected mailbox was deleted")
            self.state = State.LOGOUT
            return
        expunged, exists, flag_rows = sel.apply(changes, allow_expunge=allow_expunge)
        out = [b"* %d EXPUNGE\r\n" % seq for seq in expunged]
        if exists is not None:
            out.append(b"* %d EXISTS\r\n" % exists)
            if not self.rev2:
                out.append(b"* 0 RECENT\r\n")
        for row in flag_rows:
            out.append(self.flags_response(row, with_uid=True))
        if out:
            await self.send(b"".join(out))

    def flags_response(self, row: MessageRow, *, with_uid: bool) -> bytes:
        assert self.selected is not None
        items = [b"FLAGS (" + " ".join(sorted(row.flags)).encode() + b")"]
        if with_uid:
            items.insert(0, b"UID %d" % row.uid)
        if self.condstore:
            items.append(b"MODSEQ (%d)" % row.modseq)
        return b"* %d FETCH (" % self.selected.seq(row.uid) + b" ".join(items) + b")\r\n"

    # -- login --------------------------------------------------------------------------------
    async def login(self, user: str, password: str) -> Done:
        ip = self.io.client_ip
        if not self.plaintext_ok():
            return Done("NO", "log in after STARTTLS", "PRIVACYREQUIRED")
        auth = self.ctx.auth
        attempt = await auth.attempt("imap", ip, user, password, self.ctx.gate)
        auth.record(attempt)
        if attempt.outcome is Outcome.THROTTLED:
            return Done("NO", "too many failed logins, try again later", "UNAVAILABLE")
        if attempt.outcome is Outcome.UNAVAILABLE:
            return Done("NO", "temporarily unavailable, try again later", "UNAVAILABLE")
        account = attempt.account
        if account is None:
            self.ctx.logins["failed"] += 1
            # Slows guessing; no gate slot is held (the delay is the client's time).
            await asyncio.sleep(attempt.delay)
            return Done("NO", "invalid credentials", "AUTHENTICATIONFAILED")
        ticket = self.ctx.sessions.open(account.id)
        if ticket is None:
            log.warning(
                "event=imap_login_refused reason=sessions client=%s user=%s", ip, account.address
            )
            # RFC 5530 3: LIMIT, "a server-imposed limit", here on one account's sessions.
            return Done("NO", "too many sessions for this account, try again later", "LIMIT")
        self.ticket = ticket
        self.ctx.logins["ok"] += 1
        self.account = account
        self.state = State.AUTHENTICATED
        log.info("event=imap_login client=%s user=%s", ip, account.address)
        notice = self.ctx.notices.line(Component.IMAP) if self.ctx.notices else None
        if notice:  # RFC 9051 §7.1: the client must show an ALERT to its user
            await self.untagged(f"OK [ALERT] {notice}")
        return Done("OK", "logged in", f"CAPABILITY {self.capabilities()}")


# -- any state --------------------------------------------------------------------------------
@handles(C.Capability)
async def do_capability(s: Session, cmd: C.Command) -> Done:
    await s.untagged(f"CAPABILITY {s.capabilities()}")
    return Done(text="capabilities listed")


@handles(C.Noop, C.Check)
async def do_noop(s: Session, cmd: C.Command) -> Done:
    return Done(text="nothing to do")


@handles(C.Logout)
async def do_logout(s: Session, cmd: C.Command) -> Done:
    await s.untagged("BYE logging out")
    s.state = State.LOGOUT
    return Done(text="logged out")


@handles(C.Id)
async def do_id(s: Session, cmd: C.Command) -> Done:
    await s.untagged(f'ID ("name" "mailfort" "version" "{__version__}")')
    return Done(text="ID completed")


@handles(C.StartTLS)
async def do_starttls(s: Session, cmd: C.Command) -> Done:
    if s.io.tls:
        return Done("BAD", "TLS is already active")
    await s.tagged(cmd.tag, Done(text="begin TLS negotiation now"))
    await s.io.start_tls()
    return ANSWERED


@handles(C.Login)
async def do_login(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Login)
    return await s.login(cmd.user, cmd.password)


@handles(C.Authenticate)
async def do_authenticate(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Authenticate)
    if cmd.mechanism != "PLAIN":
        return Done("NO", "unsupported mechanism; use PLAIN", "CANNOT")
    if not s.plaintext_ok():
        return Done("NO", "authenticate after STARTTLS", "PRIVACYREQUIRED")
    data = cmd.initial
    if data is None:
        await s.send(b"+ \r\n")
        line = await s.io.read_line(60.0)
        if line is None:
            return Done("BAD", "authentication timed out")
        line = line.strip()
        if line == b"*":
            return Done("BAD", "authentication cancelled")
        try:
            data = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return Done("BAD", "invalid base64")
    parts = data.split(b"\0")
    if len(parts) != 3:
        return Done("BAD", "malformed PLAIN credentials")
    authz, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
    if authz and authz.lower() != user.lower():
        return Done("NO", "cannot act for another user", "AUTHORIZATIONFAILED")
    return await s.login(user, password)


@handles(C.Enable)
async def do_enable(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Enable)
    newly = [c for c in cmd.capabilities if c in ENABLEABLE and c not in s.enabled]
    s.enabled.update(newly)
    if "CONDSTORE" in newly:
        s.condstore = True
    if newly:
        await s.untagged(
            "ENABLED " + " ".join("IMAP4rev2" if c == "IMAP4REV2" else c for c in newly)
        )
    return Done(text="enabled")


@handles(C.Namespace)
async def do_namespace(s: Session, cmd: C.Command) -> Done:
    await s.untagged('NAMESPACE (("" "/")) NIL NIL')
    return Done(text="namespaces listed")


@handles(C.Idle)
async def do_idle(s: Session, cmd: C.Command) -> Done:
    """RFC 2177: report changes as they happen until the client says DONE."""
    await s.send(b"+ idling\r\n")
    reader = asyncio.ensure_future(s.io.read_line(30 * 60.0))
    try:
        while True:
            if s.selected is not None:
                await s.sync(allow_expunge=True)
                if s.state is State.LOGOUT:
                    return Done("NO", "mailbox gone")
            waiter = asyncio.ensure_future(s.wait_change(s.ctx.poll_interval * 15))
            closing = asyncio.ensure_future(s.io.closing.wait())
            finished, _ = await asyncio.wait(
                {reader, waiter, closing}, return_when=asyncio.FIRST_COMPLETED
            )
            closing.cancel()
            if s.io.closing.is_set():
                waiter.cancel()
                await s.untagged("BYE [UNAVAILABLE] server shutting down, please reconnect")
                s.state = State.LOGOUT
                return Done("OK", "IDLE terminated by shutdown")
            if reader in finished:
                waiter.cancel()
                line = reader.result()
                if line is None:
                    return Done("NO", "idle timed out")
                if line.strip().upper() != b"DONE":
                    return Done("BAD", "expected DONE")
                return Done(text="IDLE terminated")
            if s.selected is None:
                continue
            s._last_poll = 0.0  # a wake-up or the periodic tick: look at the store now
    finally:
        reader.cancel()
