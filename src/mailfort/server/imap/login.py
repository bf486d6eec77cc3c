"""IMAP commands of the not-authenticated state: STARTTLS, LOGIN, AUTHENTICATE (RFC 9051 6.2)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Final

from mailfort.auth.login import Outcome
from mailfort.protocol.imap import answers
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.answers import Answer
from mailfort.server.imap.session import ANSWERED, Session, State
from mailfort.status.components import Component

log = logging.getLogger("mailfort.imap")

# Outcomes that end a login before the password is judged.
_REFUSED: Final = {
    Outcome.THROTTLED: answers.LOGINS_THROTTLED,
    Outcome.UNAVAILABLE: answers.TRY_LATER,
}


async def log_in(s: Session, user: str, password: str) -> Answer:
    """The password check both LOGIN and AUTHENTICATE PLAIN end in."""
    ip = s.io.client_ip
    if not s.plaintext_ok():
        return answers.LOGIN_NEEDS_TLS
    auth = s.ctx.auth
    attempt = await auth.attempt("imap", ip, user, password, s.ctx.gate)
    auth.record(attempt)
    refused = _REFUSED.get(attempt.outcome)
    if refused is not None:
        return refused
    account = attempt.account
    if account is None:
        s.ctx.logins["failed"] += 1
        # Slows guessing; no gate slot is held (the delay is the client's time).
        await asyncio.sleep(attempt.delay)
        return answers.LOGIN_FAILED
    ticket = s.ctx.sessions.open(account.id)
    if ticket is None:
        log.warning(
            "event=imap_login_refused reason=sessions client=%s user=%s", ip, account.address
        )
        return answers.TOO_MANY_SESSIONS
    s.ticket = ticket
    s.ctx.logins["ok"] += 1
    s.account = account
    s.state = State.AUTHENTICATED
    log.info("event=imap_login client=%s user=%s", ip, account.address)
    notice = s.ctx.notices.line(Component.IMAP) if s.ctx.notices else None
    if notice:
        await s.send(answers.alert(notice))
    return answers.logged_in(s.capabilities())


async def do_starttls(s: Session, cmd: C.Command) -> Answer:
    if s.io.tls:
        return answers.TLS_ACTIVE
    await s.tagged(cmd.tag, answers.BEGIN_TLS)
    await s.io.start_tls()
    return ANSWERED


async def do_login(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Login)
    return await log_in(s, cmd.user, cmd.password)


async def do_authenticate(s: Session, cmd: C.Command) -> Answer:
    """SASL PLAIN (RFC 4616), with an initial response (SASL-IR, RFC 4959) or after `+`."""
    assert isinstance(cmd, C.Authenticate)
    if cmd.mechanism != "PLAIN":
        return answers.MECHANISM_UNSUPPORTED
    if not s.plaintext_ok():
        return answers.AUTHENTICATE_NEEDS_TLS
    data = cmd.initial
    if data is None:
        await s.send(answers.EMPTY_CHALLENGE)
        line = await s.io.read_line(60.0)
        if line is None:
            return answers.AUTHENTICATE_TIMED_OUT
        line = line.strip()
        if line == b"*":
            return answers.AUTHENTICATE_CANCELLED
        try:
            data = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return answers.INVALID_BASE64
    parts = data.split(b"\0")
    if len(parts) != 3:
        return answers.MALFORMED_PLAIN
    authz, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
    if authz and authz.lower() != user.lower():
        return answers.OTHER_USER
    return await log_in(s, user, password)
