"""Which handler runs an IMAP command, in which states, and how its outcome is answered.

`ROUTES` is the one table: a command type → its handler, the states it is allowed in (RFC 9051
6.1-6.4 and the extensions' own sections) and whether it takes a slot in the overload gate.
A command the table does not hold, or holds for other states, gets BAD, never a crash;
`tests/unit/imap/test_dispatch.py` checks the table against what the parser produces.
`run` executes one command: the gate, the translation of store errors into answers, the
untagged updates a selected session is owed, and the tagged answer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from mailfort.errors import CommitInDoubt, NotFound, OverQuota, StoreError, StoreUnavailable
from mailfort.protocol.imap import answers
from mailfort.protocol.imap import commands as C
from mailfort.server.imap import anystate, login, mailboxes, messages
from mailfort.server.imap.flags import FlagError
from mailfort.server.imap.names import NameError_
from mailfort.server.imap.session import (
    ANSWERED,
    HUNG_UP,
    CommandError,
    Handler,
    Session,
    State,
)

log = logging.getLogger("mailfort.imap")

ANY: Final = frozenset(State) - {State.LOGOUT}
NOT_AUTHENTICATED: Final = frozenset({State.NOT_AUTHENTICATED})
AUTHENTICATED: Final = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED: Final = frozenset({State.SELECTED})


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    states: frozenset[State]
    # False for commands that do not touch the store (or, like NOOP and IDLE, only to look for
    # changes): refusing them under load would only make clients reconnect. LOGIN and
    # AUTHENTICATE take a slot themselves for their store read only (`auth/login.py`): the
    # SASL exchange waits on the client, the password check has its own bound, and a failure's
    # delay is the client's time; none of it is store latency.
    gated: bool = True


ROUTES: Final[Mapping[type[C.Command], Route]] = MappingProxyType(
    {
        # any state (RFC 9051 6.1; ID: RFC 2971)
        C.Capability: Route(anystate.do_capability, ANY, gated=False),
        C.Noop: Route(anystate.do_noop, ANY, gated=False),
        C.Logout: Route(anystate.do_logout, ANY, gated=False),
        C.Id: Route(anystate.do_id, ANY, gated=False),
        # not authenticated (RFC 9051 6.2)
        C.StartTLS: Route(login.do_starttls, NOT_AUTHENTICATED, gated=False),
        C.Login: Route(login.do_login, NOT_AUTHENTICATED, gated=False),
        C.Authenticate: Route(login.do_authenticate, NOT_AUTHENTICATED, gated=False),
        # authenticated, and so also selected (RFC 9051 6.3; QUOTA: RFC 9208 4)
        C.Enable: Route(anystate.do_enable, AUTHENTICATED, gated=False),
        C.Namespace: Route(anystate.do_namespace, AUTHENTICATED, gated=False),
        C.Idle: Route(anystate.do_idle, AUTHENTICATED, gated=False),
        C.Select: Route(mailboxes.do_select, AUTHENTICATED),
        C.Create: Route(mailboxes.do_create, AUTHENTICATED),
        C.Delete: Route(mailboxes.do_delete, AUTHENTICATED),
        C.Rename: Route(mailboxes.do_rename, AUTHENTICATED),
        C.Subscribe: Route(mailboxes.do_subscribe, AUTHENTICATED),
        C.ListCmd: Route(mailboxes.do_list, AUTHENTICATED),
        C.Status: Route(mailboxes.do_status, AUTHENTICATED),
        C.Append: Route(mailboxes.do_append, AUTHENTICATED),
        C.GetQuota: Route(mailboxes.do_getquota, AUTHENTICATED),
        C.GetQuotaRoot: Route(mailboxes.do_getquotaroot, AUTHENTICATED),
        C.SetQuota: Route(mailboxes.do_setquota, AUTHENTICATED),
        # selected (RFC 9051 6.4; CHECK: RFC 3501 6.4.1)
        C.Check: Route(anystate.do_noop, SELECTED, gated=False),
        C.Close: Route(messages.do_close, SELECTED),
        C.Unselect: Route(messages.do_unselect, SELECTED),
        C.Expunge: Route(messages.do_expunge, SELECTED),
        C.Search: Route(messages.do_search, SELECTED),
        C.Fetch: Route(messages.do_fetch, SELECTED),
        C.StoreCmd: Route(messages.do_store, SELECTED),
        C.Copy: Route(messages.do_copy, SELECTED),
    }
)


async def run(s: Session, cmd: C.Command) -> bool:
    """Run one command and answer it; False when the session is over (LOGOUT, BYE)."""
    route = ROUTES.get(type(cmd))
    if route is None:
        await s.tagged(cmd.tag, answers.not_supported(cmd.name))
        return True
    if s.state not in route.states:
        await s.tagged(cmd.tag, answers.not_allowed(cmd.name, s.state.value))
        return True
    token = None
    gate = s.ctx.gate
    blocked = s.io.blocked
    if gate is not None and route.gated:
        token = gate.try_acquire("imap", s.network)
        if token is None:
            await s.tagged(cmd.tag, answers.BUSY)
            return True
    ok = True
    try:
        answer = await route.handler(s, cmd)
    except CommandError as exc:
        answer = exc.answer
    except NameError_ as exc:
        answer = answers.cannot(str(exc))
    except FlagError as exc:
        answer = answers.bad(str(exc))
    except OverQuota:
        answer = answers.OVER_QUOTA
    except NotFound as exc:
        answer = answers.nonexistent(str(exc))
    except CommitInDoubt as exc:
        # The write may have happened: NO would say it had not. The session ends without a
        # tagged answer, as after a crash, and the client resynchronises.
        log.warning("event=imap_write_in_doubt command=%s error=%s", cmd.name, exc)
        await s.send(answers.BYE_IN_DOUBT)
        answer = HUNG_UP
        ok = False
    except StoreUnavailable:
        log.warning("event=imap_store_unavailable command=%s", cmd.name)
        answer = answers.TRY_LATER
        ok = False
    except StoreError as exc:
        log.warning("event=imap_store_error command=%s error=%s", cmd.name, exc)
        answer = answers.TRY_LATER
        ok = False
    finally:
        if token is not None and gate is not None:
            gate.release(token, ok, client_wait=s.io.blocked - blocked)
    if answer is ANSWERED:
        return True
    if answer is HUNG_UP:
        return False
    if s.state is State.LOGOUT:
        await s.tagged(cmd.tag, answer)
        return False
    if s.selected is not None and not isinstance(cmd, C.Logout):
        allow_expunge = cmd.uid or not isinstance(cmd, C.Fetch | C.StoreCmd | C.Search)
        # On a store error the updates simply come with the next command.
        with contextlib.suppress(StoreError):
            await s.sync(allow_expunge=allow_expunge, force=isinstance(cmd, C.Noop | C.Check))
    await s.tagged(cmd.tag, answer)
    return True
