"""The IMAP and POP3 checks of the chaos campaign: each rule on a small hand-made history that
breaks it and one that keeps it, then the workers against a real 2-node cluster with a kill."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.campaign.history import FAIL, OK, UNKNOWN, History, Op, around
from tests.chaos.campaign.imap_load import ImapWorker
from tests.chaos.campaign.mailbox_checks import (
    FinalMailbox,
    FinalMessage,
    FinalState,
    check_imap_messages,
    check_mailboxes,
    check_modseq,
    check_pop3,
    check_uid_reuse,
    check_uidvalidity,
    final_state,
    mailbox_counts,
    pop3_deletions,
)
from tests.chaos.campaign.pop3_load import Pop3Worker
from tests.cluster_support import PgSchema, base_dsn, cluster_node, send, unexpected_tracebacks
from tests.conftest import PASSWORD

A = "a@example.test"
P = "p@example.test"
V = 7  # UIDVALIDITY of every hand-made mailbox


class Hist:
    """A hand-made history: each op takes one second, in the order written."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(
        self, f: str, outcome: str = OK, result: dict[str, Any] | None = None, **args: Any
    ) -> Op:
        t = float(len(self.ops) * 2)
        op = Op(
            len(self.ops), "w", f, "n1", {"account": A, **args}, t, t + 1, outcome, result or {}
        )
        self.ops.append(op)
        return op

    def append(
        self, mid: str, uid: int, flags: tuple[str, ...] = (), box: str = "INBOX", outcome: str = OK
    ) -> Op:
        result = {"uidvalidity": V, "uid": uid} if outcome == OK else {}
        return self.add("append", outcome, result, mailbox=box, message_id=mid, flags=list(flags))

    def store(
        self,
        mid: str,
        uid: int,
        mode: str,
        flags: tuple[str, ...],
        outcome: str = OK,
        box: str = "INBOX",
    ) -> Op:
        return self.add(
            "store",
            outcome,
            mailbox=box,
            uidvalidity=V,
            uid=uid,
            message_id=mid,
            mode=mode,
            flags=list(flags),
        )

    def move(self, mid: str, uid: int, target_uid: int | None, outcome: str = OK) -> Op:
        result = {"target_uidvalidity": V + 1, "target_uid": target_uid} if target_uid else {}
        return self.add(
            "move",
            outcome,
            result,
            mailbox="INBOX",
            target="Archive",
            uidvalidity=V,
            uid=uid,
            message_id=mid,
        )

    def expunge(self, mid: str, uid: int, outcome: str = OK, box: str = "INBOX") -> Op:
        return self.add("expunge", outcome, mailbox=box, uidvalidity=V, uid=uid, message_id=mid)

    def read(self, messages: list[list[Any]], highest: int = 1, box: str = "INBOX") -> Op:
        validity = V if box == "INBOX" else V + 1
        result = {"uidvalidity": validity, "highestmodseq": highest, "messages": messages}
        return self.add("read", OK, result, mailbox=box)


def final(
    inbox: Sequence[FinalMessage],
    archive: Sequence[FinalMessage] = (),
    highest: tuple[int, int] = (100, 100),
) -> FinalState:
    return FinalState(
        {
            A: {
                "INBOX": FinalMailbox(V, highest[0], 50, tuple(inbox)),
                "Archive": FinalMailbox(V + 1, highest[1], 50, tuple(archive)),
            }
        },
        at=1000.0,
    )


def msg(uid: int, mid: str, flags: tuple[str, ...] = (), modseq: int = 1) -> FinalMessage:
    return FinalMessage(uid, modseq, frozenset(flags), mid)


def rules(violations: list[Any]) -> list[str]:
    return sorted(v.rule for v in violations)


# -- APPEND, flags ----------------------------------------------------------------------------
def test_an_appended_message_must_be_there_with_its_last_flags() -> None:
    h = Hist()
    h.append("m1", 1, ("\\Seen",))
    h.store("m1", 1, "+", ("\\Flagged",))
    h.store("m1", 1, "-", ("\\Seen",))
    assert check_imap_messages(h.ops, final([msg(1, "m1", ("\\Flagged",))])) == []
    assert rules(check_imap_messages(h.ops, final([]))) == ["append-lost"]
    wrong = final([msg(1, "m1", ("\\Flagged", "\\Seen"))])
    assert rules(check_imap_messages(h.ops, wrong)) == ["flags-wrong"]
    assert rules(check_imap_messages(h.ops, final([msg(2, "m1", ("\\Flagged",))]))) == ["misplaced"]


def test_a_read_after_an_ok_append_shows_it() -> None:
    h = Hist()
    h.append("m1", 1, ("\\Seen",))
    h.read([])
    assert rules(check_imap_messages(h.ops, final([msg(1, "m1", ("\\Seen",))]))) == ["append-lost"]
    h.ops[-1].result["messages"] = [[1, "m1", ["\\Seen"], 3]]
    assert check_imap_messages(h.ops, final([msg(1, "m1", ("\\Seen",))])) == []


def test_an_unknown_flag_change_allows_either_value() -> None:
    h = Hist()
    h.append("m1", 1, ("\\Seen",))
    h.store("m1", 1, "+", ("\\Flagged",), outcome=UNKNOWN)
    for flags in (("\\Seen",), ("\\Seen", "\\Flagged")):
        assert check_imap_messages(h.ops, final([msg(1, "m1", flags)])) == []
    assert rules(check_imap_messages(h.ops, final([msg(1, "m1", ())]))) == ["flags-wrong"]


def test_an_unknown_append_may_or_may_not_be_there_and_a_failed_one_must_not() -> None:
    h = Hist()
    h.append("m1", 0, outcome=UNKNOWN)
    assert check_imap_messages(h.ops, final([])) == []
    assert check_imap_messages(h.ops, final([msg(4, "m1")])) == []
    h = Hist()
    h.append("m1", 0, outcome=FAIL)
    assert check_imap_messages(h.ops, final([])) == []
    assert rules(check_imap_messages(h.ops, final([msg(4, "m1")]))) == ["appeared"]


# -- MOVE, EXPUNGE ----------------------------------------------------------------------------
def test_a_moved_message_is_where_copyuid_said() -> None:
    h = Hist()
    h.append("m1", 1, ("\\Seen",))
    h.move("m1", 1, 9)
    assert check_imap_messages(h.ops, final([], [msg(9, "m1", ("\\Seen",))])) == []
    assert rules(check_imap_messages(h.ops, final([msg(1, "m1", ("\\Seen",))]))) == ["misplaced"]
    both = final([msg(1, "m1", ("\\Seen",))], [msg(9, "m1", ("\\Seen",))])
    assert rules(check_imap_messages(h.ops, both)) == ["message-duplicated"]


def test_an_unknown_move_leaves_it_in_one_of_the_two_places() -> None:
    h = Hist()
    h.append("m1", 1)
    h.move("m1", 1, None, outcome=UNKNOWN)
    assert check_imap_messages(h.ops, final([msg(1, "m1")])) == []
    assert check_imap_messages(h.ops, final([], [msg(12, "m1")])) == []
    assert rules(check_imap_messages(h.ops, final([]))) == ["append-lost"]


def test_an_expunged_message_never_comes_back() -> None:
    h = Hist()
    h.append("m1", 1)
    h.expunge("m1", 1)
    h.read([])
    assert check_imap_messages(h.ops, final([])) == []
    assert rules(check_imap_messages(h.ops, final([msg(1, "m1", ("\\Deleted",))]))) == [
        "expunged-returned"
    ]
    h.read([[1, "m1", ["\\Deleted"], 5]])
    assert rules(check_imap_messages(h.ops, final([]))) == ["expunged-returned"]


def test_an_unknown_expunge_allows_gone_or_kept_with_or_without_deleted() -> None:
    h = Hist()
    h.append("m1", 1)
    h.expunge("m1", 1, outcome=UNKNOWN)
    for inbox in ([], [msg(1, "m1")], [msg(1, "m1", ("\\Deleted",))]):
        assert check_imap_messages(h.ops, final(inbox)) == []


# -- UIDs, UIDVALIDITY, MODSEQ ----------------------------------------------------------------
def test_a_uid_names_one_message() -> None:
    h = Hist()
    h.append("m1", 1)
    h.append("m2", 2)
    assert check_uid_reuse(h.ops, final([msg(1, "m1"), msg(2, "m2")])) == []
    h.expunge("m1", 1)
    h.read([[1, "m3", [], 9]])
    assert rules(check_uid_reuse(h.ops, final([msg(2, "m2")]))) == ["uid-reused"]
    assert rules(check_uid_reuse(h.ops[:3], final([msg(1, "m3")]))) == ["uid-reused"]


def test_uidvalidity_stays() -> None:
    h = Hist()
    h.append("m1", 1)
    h.read([[1, "m1", [], 1]])
    assert check_uidvalidity(h.ops, final([msg(1, "m1")])) == []
    h.ops[-1].result["uidvalidity"] = V + 5
    assert rules(check_uidvalidity(h.ops, final([msg(1, "m1")]))) == ["uidvalidity-changed"]


def test_modseq_never_goes_backwards() -> None:
    h = Hist()
    h.append("m1", 1)
    h.read([[1, "m1", [], 4]], highest=10)
    h.read([[1, "m1", [], 4]], highest=11)
    assert check_modseq(h.ops, final([msg(1, "m1", modseq=4)], highest=(12, 1))) == []
    h.read([[1, "m1", [], 4]], highest=9)
    assert rules(check_modseq(h.ops, final([msg(1, "m1", modseq=4)]))) == ["modseq-backwards"]
    h.ops.pop()
    h.read([[1, "m1", [], 3]], highest=11)
    assert rules(check_modseq(h.ops, final([msg(1, "m1", modseq=4)]))) == ["modseq-backwards"]
    h.ops.pop()
    assert rules(check_modseq(h.ops, final([msg(1, "m1", modseq=4)], highest=(10, 1)))) == [
        "modseq-backwards"
    ]
    assert rules(check_modseq(h.ops, final([msg(1, "m1", modseq=40)], highest=(40, 1)))) == []
    assert rules(check_modseq(h.ops, final([msg(1, "m1", modseq=41)], highest=(40, 1)))) == [
        "modseq-above-highest"
    ]


def test_overlapping_observations_may_disagree() -> None:
    h = Hist()
    first = h.read([], highest=10)
    second = h.read([], highest=8)
    second.start = first.end - 0.5  # began before the first had its answer
    assert check_modseq(h.ops, final([], highest=(10, 1))) == []


# -- POP3 --------------------------------------------------------------------------------------
class Pop:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.serial = itertools.count(1)

    def add(self, f: str, outcome: str, session: str, **args: Any) -> Op:
        t = float(len(self.ops) * 2)
        op = Op(
            len(self.ops),
            "p",
            f,
            "n1",
            {"account": P, "session": session, **args},
            t,
            t + 1,
            outcome,
            {},
        )
        self.ops.append(op)
        return op

    def session(self, listed: list[str], deleted: list[str], quit: str | None) -> str:
        """`quit`: ok/fail/unknown, "drop" (closed without QUIT) or None (broke before QUIT)."""
        s = f"s{next(self.serial)}"
        self.add("pop3-list", OK, s).result["uidls"] = listed
        pairs = [[u, f"mid-{u}"] for u in deleted]
        for u, mid in pairs:
            self.add("pop3-retr", OK, s, number=1, uidl=u).result["message_id"] = mid
            self.add("pop3-dele", OK, s, number=1, uidl=u, message_id=mid)
        if quit == "drop":
            self.add("pop3-drop", OK, s, deleted=pairs)
        elif quit is not None:
            self.add("pop3-quit", quit, s, deleted=pairs)
        return s


def pop_final(uids: list[int]) -> FinalState:
    messages = tuple(FinalMessage(u, 1, frozenset(), f"mid-{V}.{u}") for u in uids)
    return FinalState({P: {"INBOX": FinalMailbox(V, 100, 50, messages)}}, at=1000.0)


def test_quit_ok_deletes_all() -> None:
    p = Pop()
    p.session(["7.1", "7.2", "7.3"], ["7.1", "7.2"], OK)
    assert check_pop3(p.ops, pop_final([3]), {}) == []
    assert rules(check_pop3(p.ops, pop_final([2, 3]), {})) == ["pop3-delete-lost"]
    p.session(["7.1", "7.3"], [], OK)
    assert rules(check_pop3(p.ops, pop_final([3]), {})) == ["pop3-deleted-returned"]


def test_quit_unknown_deletes_all_or_none() -> None:
    p = Pop()
    p.session(["7.1", "7.2", "7.3"], ["7.1", "7.2"], UNKNOWN)
    assert check_pop3(p.ops, pop_final([3]), {}) == []
    assert check_pop3(p.ops, pop_final([1, 2, 3]), {}) == []
    assert rules(check_pop3(p.ops, pop_final([2, 3]), {})) == ["pop3-partial-delete"]
    # a later session that deleted one of them again: only the rest must agree
    p.session(["7.1", "7.2", "7.3"], ["7.1"], OK)
    assert check_pop3(p.ops, pop_final([2, 3]), {}) == []


@pytest.mark.parametrize("end", ["drop", None, FAIL])
def test_no_quit_deletes_nothing(end: str | None) -> None:
    p = Pop()
    p.session(["7.1", "7.2"], ["7.1"], end)
    assert check_pop3(p.ops, pop_final([1, 2]), {}) == []
    assert rules(check_pop3(p.ops, pop_final([2]), {})) == ["pop3-deleted-without-quit"]
    p.session(["7.2"], [], OK)
    assert "pop3-deleted-without-quit" in rules(check_pop3(p.ops, pop_final([1, 2]), {}))
    p = Pop()
    p.session(["7.1", "7.2"], ["7.1"], end)
    p.session(["7.1", "7.2"], ["7.1"], OK)  # deleted for real the second time
    assert check_pop3(p.ops, pop_final([2]), {}) == []


def test_acknowledged_mail_is_there_or_deleted_by_pop3() -> None:
    p = Pop()
    p.session(["7.1", "7.2"], ["7.1"], UNKNOWN)
    acknowledged = {P: {"mid-7.1", "mid-7.2", "mid-7.3"}}
    assert pop3_deletions(p.ops).possible == {P: {"mid-7.1"}}
    assert rules(check_pop3(p.ops, pop_final([2, 3]), acknowledged)) == []
    assert rules(check_pop3(p.ops, pop_final([2]), acknowledged)) == ["acknowledged-lost"]


# -- against a real cluster -------------------------------------------------------------------
IMAP_USERS = ["imap1@example.test", "imap2@example.test"]
POP_USER = "pop1@example.test"
# The workers log in without TLS, as the campaign's clients do on the nodes' loopback addresses.
PLAIN_LOGINS = "[auth]\nallow_plaintext_loopback = true\n"


# Serial (tests/conftest.py): fixed ports, a SIGKILL and lease timing under load.
@pytest.mark.serial
@pytest.mark.slow
def test_workers_against_a_cluster_with_a_kill(tmp_path: Path) -> None:
    schema = PgSchema.create(base_dsn())
    nodes = [
        cluster_node(tmp_path, name, schema.url, fixed=True, extra_config=PLAIN_LOGINS)
        for name in ("node-a", "node-b")
    ]
    history = History(tmp_path / "history.jsonl")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    acknowledged: set[str] = set()
    try:
        schema.provision(users={u: PASSWORD for u in [*IMAP_USERS, POP_USER]})
        for node in nodes:
            node.start()

        def targets(kind: str) -> Any:
            return lambda rng: (lambda n: (n.name, "127.0.0.1", n.fixed_ports[kind]))(
                rng.choice(nodes)
            )

        workers: list[ImapWorker | Pop3Worker] = [
            ImapWorker(f"imap-{n}", history, targets("imap"), user, PASSWORD, seed=n)
            for n, user in enumerate(IMAP_USERS)
        ]
        workers.append(Pop3Worker("pop3-0", history, targets("pop3"), POP_USER, PASSWORD, seed=9))

        def mx() -> None:
            rng = random.Random(5)
            for n in itertools.count():
                if stop.is_set():
                    return
                node = rng.choice(nodes)
                mid = f"mx-{n}@chaos.test"
                body = f"From: s@remote.test\r\nSubject: {n}\r\nMessage-ID: <{mid}>\r\n\r\nhi\r\n"
                with history.op("mx-0", "send", node.name, message_id=mid) as op:
                    code, _ = send(node.fixed_ports["smtp"], [POP_USER], body.encode(), timeout=10)
                    (op.ok if code == 250 else op.fail)(code=code)
                    if code == 250:
                        acknowledged.add(mid)
                stop.wait(0.05)

        threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
        threads.append(threading.Thread(target=mx))
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(5)
        with history.op("nemesis", "kill", "node-b") as op:
            nodes[1].kill()
            op.ok()
        time.sleep(1.5)
        with history.op("nemesis", "restart", "node-b") as op:
            nodes[1].start()
            op.ok()
        time.sleep(max(0.0, 15 - (time.monotonic() - started)))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        took = time.monotonic() - started
        ops = history.ops()
        state = final_state(schema.query, [*IMAP_USERS, POP_USER], time.time())
        violations = check_mailboxes(ops, state, {POP_USER: acknowledged})
        counts = mailbox_counts(ops)
        print(f"\n{len(ops)} operations in {took:.1f} s: {counts}")
        print(
            "by worker per second:",
            {w.name: round(sum(1 for o in ops if o.client == w.name) / took, 1) for w in workers},
        )
        for v in violations:
            print(f"{v.rule}: {v.detail}\n{around(ops, v)}")
        assert not violations
        errors = [e for w in workers if isinstance(w, ImapWorker) for e in w.errors]
        assert not errors, errors
        outcomes = Counter(f"{o.f} {o.outcome}" for o in ops)
        # The load did something of every kind (not a speed: a run that did nothing proves nothing).
        for kind in (
            "append ok",
            "store ok",
            "move ok",
            "expunge ok",
            "read ok",
            "pop3-quit ok",
            "pop3-dele ok",
        ):
            assert outcomes[kind] > 0, (kind, counts)
        assert acknowledged
        for node in nodes:
            assert not unexpected_tracebacks(node.log()), node.name
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for node in nodes:
            node.stop()
        history.close()
        schema.drop()


def test_a_quit_the_connection_dies_on_is_unknown_not_refused() -> None:
    """poplib reports a connection closed before QUIT's answer as an `-ERR EOF` of its own; the
    deletions may have been committed, so the worker must record "unknown", not "fail"."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    message = b"Message-ID: <one@chaos.test>\r\n\r\nhi\r\n"

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"+OK ready\r\n")
            for line in lines:
                verb = line.split()[0].upper()
                if verb == b"QUIT":
                    stop.set()
                    return  # closed without an answer, as a node killed mid-commit
                replies = {
                    b"STAT": b"+OK 1 40\r\n",
                    b"UIDL": b"+OK\r\n1 7.1\r\n.\r\n",
                    b"RETR": b"+OK\r\n" + message + b".\r\n",
                }
                conn.sendall(replies.get(verb, b"+OK\r\n"))

    thread = threading.Thread(target=serve)
    thread.start()
    history = History()
    port = server.getsockname()[1]
    worker = Pop3Worker(
        "pop3-t", history, lambda rng: ("n1", "127.0.0.1", port), P, "pw", seed=1, drop_rate=0.0
    )
    try:
        worker.run(stop)
    finally:
        stop.set()
        thread.join(timeout=10)
        server.close()
    quits = [op for op in history.ops() if op.f == "pop3-quit"]
    assert [op.outcome for op in quits] == [UNKNOWN]
