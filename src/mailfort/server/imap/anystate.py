"""IMAP commands of any state (CAPABILITY, NOOP, LOGOUT, ID: RFC 9051 6.1, RFC 2971), and those
of the authenticated state that change the session rather than mail (ENABLE, NAMESPACE, IDLE)."""

from __future__ import annotations

import asyncio

from mailfort import __version__
from mailfort.protocol.imap import answers, response
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.answers import Answer
from mailfort.server.imap import names
from mailfort.server.imap.session import Session, State

# RFC 5161 3.1: what ENABLE may turn on; anything else a client names is left out of ENABLED.
ENABLEABLE = frozenset({"CONDSTORE", "UTF8=ACCEPT", "IMAP4REV2"})


async def do_capability(s: Session, cmd: C.Command) -> Answer:
    await s.send(response.capability_response(s.capabilities()))
    return answers.ok("capabilities listed")


async def do_noop(s: Session, cmd: C.Command) -> Answer:
    """NOOP, and CHECK (RFC 3501 6.4.1): every write is already durable, nothing to flush."""
    return answers.ok("nothing to do")


async def do_logout(s: Session, cmd: C.Command) -> Answer:
    await s.send(answers.BYE_LOGOUT)
    s.state = State.LOGOUT
    return answers.ok("logged out")


async def do_id(s: Session, cmd: C.Command) -> Answer:
    await s.send(response.id_response((("name", "mailfort"), ("version", __version__))))
    return answers.completed("ID")


async def do_enable(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Enable)
    newly = [c for c in cmd.capabilities if c in ENABLEABLE and c not in s.enabled]
    s.enabled.update(newly)
    if "CONDSTORE" in newly:
        s.condstore = True
    if newly:
        await s.send(
            response.enabled_response("IMAP4rev2" if c == "IMAP4REV2" else c for c in newly)
        )
    return answers.ok("enabled")


async def do_namespace(s: Session, cmd: C.Command) -> Answer:
    await s.send(response.namespace_response(names.DELIMITER))
    return answers.ok("namespaces listed")


async def do_idle(s: Session, cmd: C.Command) -> Answer:
    """RFC 2177: report changes as they happen until the client says DONE."""
    await s.send(answers.IDLING)
    reader = asyncio.ensure_future(s.io.read_line(30 * 60.0))
    try:
        while True:
            if s.selected is not None:
                await s.sync(allow_expunge=True)
                if s.state is State.LOGOUT:
                    return answers.IDLE_MAILBOX_GONE
            waiter = asyncio.ensure_future(s.wait_change(s.ctx.poll_interval * 15))
            closing = asyncio.ensure_future(s.io.closing.wait())
            finished, _ = await asyncio.wait(
                {reader, waiter, closing}, return_when=asyncio.FIRST_COMPLETED
            )
            closing.cancel()
            if s.io.closing.is_set():
                waiter.cancel()
                await s.send(answers.BYE_SHUTDOWN)
                s.state = State.LOGOUT
                return answers.IDLE_SHUT_DOWN
            if reader in finished:
                waiter.cancel()
                line = reader.result()
                if line is None:
                    return answers.IDLE_TIMED_OUT
                if line.strip().upper() != b"DONE":
                    return answers.IDLE_EXPECTED_DONE
                return answers.ok("IDLE terminated")
            if s.selected is None:
                continue
            s._last_poll = 0.0  # a wake-up or the periodic tick: look at the store now
    finally:
        reader.cancel()
