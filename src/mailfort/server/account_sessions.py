"""Logged-in sessions per account on this node, at most `limit` at a time.

Every logged-in IMAP, POP3 and submission session holds a ticket from the moment its login
succeeds until it ends. Past `[limits] max_sessions_per_account` a login with the right password
is refused with a temporary answer (IMAP `NO [LIMIT]`, RFC 5530; POP3 `-ERR [IN-USE]`, RFC
2449; SMTP `454 4.7.0`), like Dovecot's `mail_max_userip_connections`: one account, stolen or
misconfigured, cannot hold all of a node's connections, or its spool and memory through them.
"""

from __future__ import annotations

from collections import Counter


class SessionTicket:
    """One session's place; `close()` gives it back (any number of times)."""

    __slots__ = ("_sessions", "account_id")

    def __init__(self, sessions: AccountSessions | None, account_id: int) -> None:
        self._sessions = sessions
        self.account_id = account_id

    def close(self) -> None:
        sessions, self._sessions = self._sessions, None
        if sessions is not None:
            sessions._release(self.account_id)


class AccountSessions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[int] = Counter()

    def open(self, account_id: int) -> SessionTicket | None:
        """A ticket for a new session of the account, or None when it has `limit` already."""
        if self._open[account_id] >= self.limit:
            return None
        self._open[account_id] += 1
        return SessionTicket(self, account_id)

    def count(self, account_id: int) -> int:
        return self._open[account_id]

    def _release(self, account_id: int) -> None:
        self._open[account_id] -= 1
        if self._open[account_id] <= 0:
            del self._open[account_id]
