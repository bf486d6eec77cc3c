"""The campaign's IMAP load: one worker per account, random sessions of writes and reads.

Each worker is the only writer of its account, so it keeps a model of where each of its messages
is (mailbox, UID) and which flags it has, and picks its writes from that model. Every write and
read goes into the history with what the checker (`mailbox_checks`) needs: mailbox, UIDVALIDITY,
UID, Message-ID, flags, MODSEQ.

After an operation whose outcome is unknown (the connection broke, a timeout) the message it
touched is *tainted*: the worker never writes it again. A paused node can wake up and finish the
command long after the client gave up, so a later write could be overtaken by it; leaving the
message alone keeps every uncertain operation the last write of its message, which is what the
checker assumes. Reads go on seeing it.

History records (`f`, args → result):
- `append` {account, mailbox, message_id, flags} → {uidvalidity, uid}
- `store` {account, mailbox, uidvalidity, uid, message_id, mode "+"/"-", flags} → {flags, modseq}
- `move` {account, mailbox, target, uidvalidity, uid, message_id} → {target_uidvalidity,
  target_uid} (no target: the server moved nothing)
- `expunge` {account, mailbox, uidvalidity, uid, message_id} → {} (STORE +FLAGS \\Deleted, then
  UID EXPUNGE of that UID)
- `read` {account, mailbox} → {uidvalidity, highestmodseq, messages: [[uid, message_id, flags,
  modseq], ...]} (SELECT, then UID FETCH 1:* of FLAGS MODSEQ and the Message-ID header)
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.campaign.history import UNKNOWN, Op
from tests.chaos.campaign.worker import SessionWorker

MAILBOXES = ("INBOX", "Archive")
KEYWORD = "$Chaos"
FLAGS = ("\\Seen", "\\Flagged", KEYWORD)
# Flags the checker compares; the server adds none of its own except \Recent, which is ignored.
IGNORED_FLAGS = frozenset({"\\Recent"})

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_COPYUID = re.compile(rb"^(\d+) (\d+) (\d+)$")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_FETCH_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.I | re.M)


def message_id_of(data: bytes) -> str | None:
    """The Message-ID of a message (or of its header fields), without angle brackets."""
    header = data.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(header)
    return found[1].decode("ascii", "replace") if found else None


def parse_flags(text: bytes) -> list[str]:
    return sorted(f for f in text.decode("ascii", "replace").split() if f not in IGNORED_FLAGS)


def parse_fetch(data: Sequence[object]) -> list[tuple[int, str | None, list[str], int]]:
    """(uid, message_id, flags, modseq) of each message in an imaplib UID FETCH answer."""
    found = []
    for item in data:
        if isinstance(item, tuple):
            meta, literal = item[0], item[1]
        elif isinstance(item, bytes):
            meta, literal = item, b""
        else:
            continue
        uid = _FETCH_UID.search(meta)
        if uid is None:
            continue  # the ")" closing a literal, or an unsolicited update
        flags = _FETCH_FLAGS.search(meta)
        modseq = _FETCH_MODSEQ.search(meta)
        found.append(
            (
                int(uid[1]),
                message_id_of(literal) if literal else None,
                parse_flags(flags[1]) if flags else [],
                int(modseq[1]) if modseq else 0,
            )
        )
    return found


@dataclass
class _Known:
    message_id: str
    mailbox: str
    uid: int
    flags: set[str] = field(default_factory=set)


class _Broken(Exception):
    """The session cannot go on (the last operation's outcome is unknown)."""


class ImapWorker(SessionWorker):
    """Random IMAP sessions against the nodes `targets` picks, until `stop` is set."""

    def __init__(
        self,
        *args: Any,
        max_messages: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_messages = max_messages  # per mailbox: beyond it the worker removes more
        self.known: dict[str, _Known] = {}
        self.tainted: set[str] = set()
        self.uidvalidity: dict[str, int] = {}
        self._serial = 0
        self.errors: list[str] = []  # unexpected exceptions (not the connection's), for a reader

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            node, host, port = self.targets(self.rng)
            try:
                self._session(stop, node, host, port)
            except (OSError, imaplib.IMAP4.error, _Broken, EOFError):
                stop.wait(self.retry_pause)

    def _session(self, stop: threading.Event, node: str, host: str, port: int) -> None:
        imap = (
            imaplib.IMAP4_SSL(host, port, ssl_context=self.tls, timeout=self.timeout)
            if self.tls
            else imaplib.IMAP4(host, port, timeout=self.timeout)
        )
        self.sessions += 1
        try:
            imap.login(self.account, self.password)
            imap.enable("CONDSTORE")
            for box in MAILBOXES[1:]:
                imap.create(box)  # NO [ALREADYEXISTS] when it is there: fine
            selected: list[str] = [""]
            for _ in range(self.rng.randint(5, 30)):
                if stop.is_set():
                    break
                self._one(imap, node, selected)
            imap.logout()
        finally:
            with contextlib.suppress(OSError):
                imap.shutdown()

    def _one(self, imap: imaplib.IMAP4, node: str, selected: list[str]) -> None:
        writable = [k for k in self.known.values() if k.message_id not in self.tainted]
        crowded = (
            sum(1 for k in writable if k.mailbox == "INBOX") > self.max_messages
            or sum(1 for k in writable if k.mailbox == "Archive") > self.max_messages
        )
        roll = self.rng.random()
        if not writable or (roll < 0.3 and not crowded):
            self._append(imap, node, selected)
        elif roll < 0.5:
            self._store(imap, node, selected, self.rng.choice(writable))
        elif roll < 0.62:
            inbox = [k for k in writable if k.mailbox == "INBOX"]
            if inbox:
                self._move(imap, node, selected, self.rng.choice(inbox))
        elif roll < 0.8 or crowded:
            self._expunge(imap, node, selected, self.rng.choice(writable))
        else:
            self._read(imap, node, selected, self.rng.choice(MAILBOXES))

    # -- operations -------------------------------------------------------------------------
    def _finish(self, op: Op, touched: str | None = None) -> None:
        """After the op's block: an unknown outcome taints its message and ends the session."""
        if op.outcome != UNKNOWN:
            return
        if touched is not None:
            self.tainted.add(touched)
        error = str(op.result.get("error", ""))
        expected = ("OSError", "TimeoutError", "timeout", "abort", "EOFError", "Connection")
        if error and not any(e in error for e in expected):
            self.errors.append(error)
        raise _Broken(error or str(op.result))

    def _new_message(self) -> tuple[str, bytes]:
        self._serial += 1
        mid = f"{self.name}-{self._serial}-{self.rng.getrandbits(32):08x}@chaos.test"
        body = (
            f"From: {self.account}\r\nTo: {self.account}\r\nSubject: {self.name} {self._serial}\r\n"
            f"Message-ID: <{mid}>\r\n\r\nchaos campaign message {self._serial}\r\n"
        ).encode()
        return mid, body

    def _append(self, imap: imaplib.IMAP4, node: str, selected: list[str]) -> None:
        mailbox = "INBOX" if self.rng.random() < 0.8 else "Archive"
        flags = sorted(f for f in FLAGS if self.rng.random() < 0.4)
        mid, body = self._new_message()
        with self.history.op(
            self.name, "append", node, account=self.account, mailbox=mailbox, message_id=mid,
            flags=flags,
        ) as op:  # fmt: skip
            typ, data = imap.append(mailbox, f"({' '.join(flags)})" if flags else None, None, body)
            code = (
                _APPENDUID.search(data[0] or b"") if data and isinstance(data[0], bytes) else None
            )
            if typ != "OK":
                op.fail(answer=_text(data))
            elif code is None:
                op.ok()  # where it went is unknown: a message the worker leaves alone
                self.tainted.add(mid)
            else:
                uidvalidity, uid = int(code[1]), int(code[2])
                op.ok(uidvalidity=uidvalidity, uid=uid)
                self._saw_uidvalidity(mailbox, uidvalidity)
                self.known[mid] = _Known(mid, mailbox, uid, set(flags))
        self._finish(op, mid)

    def _select(self, imap: imaplib.IMAP4, node: str, selected: list[str], mailbox: str) -> None:
        if selected[0] == mailbox:
            return
        self._read(imap, node, selected, mailbox, fetch=False)

    def _read(
        self,
        imap: imaplib.IMAP4,
        node: str,
        selected: list[str],
        mailbox: str,
        *,
        fetch: bool = True,
    ) -> None:
        selected[0] = ""
        with self.history.op(
            self.name, "read" if fetch else "select", node, account=self.account, mailbox=mailbox
        ) as op:
            typ, data = imap.select(mailbox)
            if typ != "OK":
                op.fail(answer=_text(data))
            else:
                uidvalidity = int(imap.response("UIDVALIDITY")[1][0] or 0)
                highest = int(imap.response("HIGHESTMODSEQ")[1][0] or 0)
                result: dict[str, object] = {"uidvalidity": uidvalidity, "highestmodseq": highest}
                ok = True
                if fetch:
                    typ, data = imap.uid(
                        "FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
                    )
                    ok = typ == "OK"
                    result["messages"] = [list(m) for m in parse_fetch(data)] if ok else []
                if ok:
                    op.ok(**result)
                    self._saw_uidvalidity(mailbox, uidvalidity)
                    selected[0] = mailbox
                else:
                    op.fail(answer=_text(data), **result)
        self._finish(op)
        if op.outcome != "ok":
            raise _Broken(f"cannot select {mailbox}")

    def _store(self, imap: imaplib.IMAP4, node: str, selected: list[str], msg: _Known) -> None:
        self._select(imap, node, selected, msg.mailbox)
        mode = self.rng.choice("+-")
        flags = sorted(self.rng.sample(FLAGS, self.rng.randint(1, 2)))
        with self.history.op(
            self.name, "store", node, account=self.account, mailbox=msg.mailbox,
            uidvalidity=self.uidvalidity[msg.mailbox], uid=msg.uid, message_id=msg.message_id,
            mode=mode, flags=flags,
        ) as op:  # fmt: skip
            typ, data = imap.uid("STORE", str(msg.uid), f"{mode}FLAGS", f"({' '.join(flags)})")
            if typ != "OK":
                op.fail(answer=_text(data))
            else:
                seen = [m for m in parse_fetch(data) if m[0] == msg.uid]
                if seen:
                    op.ok(flags=seen[0][2], modseq=seen[0][3])
                else:
                    op.ok()
                if mode == "+":
                    msg.flags |= set(flags)
                else:
                    msg.flags -= set(flags)
        self._finish(op, msg.message_id)

    def _move(self, imap: imaplib.IMAP4, node: str, selected: list[str], msg: _Known) -> None:
        self._select(imap, node, selected, msg.mailbox)
        target = "Archive"
        with self.history.op(
            self.name, "move", node, account=self.account, mailbox=msg.mailbox, target=target,
            uidvalidity=self.uidvalidity[msg.mailbox], uid=msg.uid, message_id=msg.message_id,
        ) as op:  # fmt: skip
            imap.untagged_responses.pop("COPYUID", None)
            typ, data = imap.uid("MOVE", str(msg.uid), target)
            codes = imap.untagged_responses.pop("COPYUID", [])
            code = _COPYUID.match(codes[-1]) if codes and isinstance(codes[-1], bytes) else None
            if typ != "OK":
                op.fail(answer=_text(data))
            elif code is None or int(code[2]) != msg.uid:
                op.ok()  # nothing moved: the model was wrong; the checker judges
                self.tainted.add(msg.message_id)
            else:
                op.ok(target_uidvalidity=int(code[1]), target_uid=int(code[3]))
                self._saw_uidvalidity(target, int(code[1]))
                msg.mailbox, msg.uid = target, int(code[3])
        self._finish(op, msg.message_id)

    def _expunge(self, imap: imaplib.IMAP4, node: str, selected: list[str], msg: _Known) -> None:
        self._select(imap, node, selected, msg.mailbox)
        with self.history.op(
            self.name, "expunge", node, account=self.account, mailbox=msg.mailbox,
            uidvalidity=self.uidvalidity[msg.mailbox], uid=msg.uid, message_id=msg.message_id,
        ) as op:  # fmt: skip
            typ, data = imap.uid("STORE", str(msg.uid), "+FLAGS.SILENT", "(\\Deleted)")
            if typ != "OK":
                op.fail(answer=_text(data))
            else:
                typ, data = imap.uid("EXPUNGE", str(msg.uid))
                if typ != "OK":
                    # \Deleted is set and the message stays: neither "done" nor "not done".
                    op.unknown(answer=_text(data))
                    self.tainted.add(msg.message_id)
                else:
                    op.ok()
                    del self.known[msg.message_id]
        self._finish(op, msg.message_id)

    def _saw_uidvalidity(self, mailbox: str, uidvalidity: int) -> None:
        if self.uidvalidity.setdefault(mailbox, uidvalidity) != uidvalidity:
            # Every UID the model holds for that mailbox means nothing now: leave those alone.
            self.uidvalidity[mailbox] = uidvalidity
            self.tainted |= {k.message_id for k in self.known.values() if k.mailbox == mailbox}


def _text(data: Sequence[object] | None) -> str:
    first = data[0] if data else b""
    return first.decode("utf-8", "replace")[:200] if isinstance(first, bytes) else str(first)[:200]
