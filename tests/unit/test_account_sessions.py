"""The cap on one account's logged-in sessions (server/account_sessions.py)."""

from __future__ import annotations

from mailfort.server.account_sessions import AccountSessions


def test_past_the_cap_a_session_is_refused_until_one_ends() -> None:
    sessions = AccountSessions(2)
    a, b = sessions.open(1), sessions.open(1)
    assert a is not None and b is not None
    assert sessions.open(1) is None
    assert sessions.open(2) is not None  # another account is not touched
    a.close()
    a.close()  # twice changes nothing
    assert sessions.count(1) == 1
    assert sessions.open(1) is not None
    assert sessions.open(1) is None
