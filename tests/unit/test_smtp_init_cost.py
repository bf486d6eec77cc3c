"""The stand-in for `inspect` that server/smtp.py gives aiosmtpd finds the same AUTH methods."""

from __future__ import annotations

import asyncio
import inspect

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP

from mailfort.server.smtp import _AiosmtpdInspect


class Handler:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"

    async def auth_CUSTOM(self, server: object, args: list[str]) -> None:
        return None


def test_the_same_auth_members_as_inspect_getmembers() -> None:
    assert aiosmtpd.smtp.inspect is _AiosmtpdInspect  # installed on import
    loop = asyncio.new_event_loop()
    try:
        handler = Handler()
        server = SMTP(handler, loop=loop)
        for obj in (server, handler):
            expected = [(n, m) for n, m in inspect.getmembers(obj) if n.startswith("auth_")]
            assert _AiosmtpdInspect.getmembers(obj) == expected
        assert set(server._auth_methods) == {"LOGIN", "PLAIN", "CUSTOM"}
        assert _AiosmtpdInspect.signature(handler.handle_DATA) == inspect.signature(
            handler.handle_DATA
        )
    finally:
        loop.close()


def test_names_for_aiosmtpd_are_what_dir_says() -> None:
    # aiosmtpd's scans get dir() from a per-class cache of the names it looks for; it must
    # hold every one of them, or aiosmtpd would miss (or invent) commands, hooks and AUTH
    # mechanisms.
    from mailfort.server.smtp import _HOOK_PREFIXES, LimitedSMTP, _names

    class Probe(LimitedSMTP):
        def __init__(self) -> None:  # no aiosmtpd set-up: only the attribute lookup matters
            self.extra = 1

    def hooks(obj: object) -> set[str]:
        return {n for n in dir(obj) if n.startswith(_HOOK_PREFIXES)}

    probe = Probe()
    assert aiosmtpd.smtp.dir is _names  # type: ignore[attr-defined]
    assert set(_names(probe)) == hooks(probe)
    assert set(_names(Handler())) == hooks(Handler())
    assert "smtp_EHLO" in _names(probe) and "auth_PLAIN" in _names(probe)
    assert "handle_DATA" in _names(Handler()) and "extra" not in _names(probe)


def test_no_session_or_policy_instance_has_hooks_of_its_own() -> None:
    # The per-class cache leaves out instance attributes: none may be a hook.
    from mailfort.server.smtp import _HOOK_PREFIXES, LimitedSMTP
    from mailfort.server.smtp_policy import SmtpPolicy

    for cls in (LimitedSMTP, SmtpPolicy):
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None or not hasattr(init, "__code__"):
                continue
            assigned = set(init.__code__.co_names)
            assert not {n for n in assigned if n.startswith(_HOOK_PREFIXES)}, klass
