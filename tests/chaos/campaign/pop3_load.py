"""The campaign's POP3 load: sessions that list, retrieve and delete the mail MX brought.

One worker per account (a maildrop is one session's at a time). A session lists the maildrop
(STAT, UIDL), retrieves a few messages to learn their Message-IDs, marks some of those deleted and
then mostly QUITs; now and then it drops the connection instead, which must delete nothing
(RFC 1939 6: deletions happen in the UPDATE state only).

History records (`f`, args → result), all with `account` and `session` (unique per session):
- `pop3-list` {} → {uidls: [uidl, ...]} (the maildrop at login, in message-number order)
- `pop3-retr` {number, uidl} → {message_id}
- `pop3-dele` {number, uidl, message_id} → {}
- `pop3-quit` {deleted: [[uidl, message_id], ...]} → ok: `+OK`; fail: `-ERR` (nothing deleted);
  unknown: no answer (all or nothing was deleted)
- `pop3-drop` {deleted: [...]} → ok (the client closed without QUIT: nothing may be deleted)
A session whose connection broke before QUIT has DELEs and no `pop3-quit`: nothing deleted.
`mailbox_checks.pop3_deletions` tells which Message-IDs the sessions deleted.
"""

from __future__ import annotations

import poplib
import threading
from contextlib import AbstractContextManager
from typing import Any

from tests.chaos.campaign.history import OK, Op
from tests.chaos.campaign.imap_load import message_id_of
from tests.chaos.campaign.worker import SessionWorker


class _Broken(Exception):
    pass


class Pop3Worker(SessionWorker):
    def __init__(
        self,
        *args: Any,
        drop_rate: float = 0.15,
        session_pause: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.drop_rate = drop_rate
        self.session_pause = session_pause  # between sessions, so MX can fill the maildrop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            node, host, port = self.targets(self.rng)
            try:
                self._session(node, host, port)
                stop.wait(self.session_pause)
            except (OSError, poplib.error_proto, _Broken, EOFError):
                stop.wait(self.retry_pause)

    def _op(self, f: str, node: str, session: str, **args: object) -> AbstractContextManager[Op]:
        return self.history.op(self.name, f, node, account=self.account, session=session, **args)

    def _session(self, node: str, host: str, port: int) -> None:
        self.sessions += 1
        session = f"{self.name}-{self.sessions}"
        pop = (
            poplib.POP3_SSL(host, port, context=self.tls, timeout=self.timeout)
            if self.tls
            else poplib.POP3(host, port, timeout=self.timeout)
        )
        try:
            pop.user(self.account)
            pop.pass_(self.password)
            with self._op("pop3-list", node, session) as op:
                pop.stat()
                _, lines, _ = pop.uidl()
                uidls = [line.decode().split()[1] for line in lines]
                op.ok(uidls=uidls)
            if op.outcome != OK:
                raise _Broken(session)
            picked = self.rng.sample(range(1, len(uidls) + 1), min(len(uidls), 5))
            deleted: list[list[str]] = []
            for number in picked:
                uidl = uidls[number - 1]
                with self._op("pop3-retr", node, session, number=number, uidl=uidl) as op:
                    _, lines, _ = pop.retr(number)
                    mid = message_id_of(b"\r\n".join(lines))
                    op.ok(message_id=mid)
                if op.outcome != OK:
                    raise _Broken(session)
                if mid is None or self.rng.random() < 0.3:
                    continue
                with self._op(
                    "pop3-dele", node, session, number=number, uidl=uidl, message_id=mid
                ) as op:
                    pop.dele(number)
                    op.ok()
                if op.outcome != OK:
                    raise _Broken(session)
                deleted.append([uidl, mid])
            if self.rng.random() < self.drop_rate:
                with self._op("pop3-drop", node, session, deleted=deleted) as op:
                    pop.close()
                    op.ok()
                return
            with self._op("pop3-quit", node, session, deleted=deleted) as op:
                try:
                    pop.quit()
                except poplib.error_proto as exc:
                    if not isinstance(exc.args[0], bytes):
                        # poplib's own "-ERR EOF" (a str): the connection closed without an
                        # answer, so the deletions may have been committed or not.
                        raise
                    op.fail(answer=exc.args[0].decode("utf-8", "replace")[:200])
                else:
                    op.ok()
        finally:
            pop.close()
