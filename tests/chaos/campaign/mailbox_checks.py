"""Checks of the IMAP and POP3 history against itself and against the final state of the store.

Every check is a pure function of the history (`list[Op]`, as `imap_load` and `pop3_load` record
it) and a `FinalState` (read with `final_state` once the load has stopped), returning violations.
`check_mailboxes` runs them all.

The message model. Each IMAP message is known by its Message-ID (unique per APPEND). Its writes
(append, store, move, expunge) form a chain; the workers never write a message after an operation
on it whose outcome is unknown, so an uncertain operation is always the last write of its chain
(it may still land late: a paused node wakes up). To judge what a read over [a, b] may show, the
chain is replayed over a *set* of possible states: an operation that ended OK before `a` happened;
one that was unknown, or overlaps the read, may have happened (both branches are kept); a failed
one did not. The read (or the final state) must match one of the possible states: the mailbox,
the UID where known, and the flags.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.campaign.history import FAIL, OK, UNKNOWN, Op, Violation
from tests.chaos.campaign.imap_load import IGNORED_FLAGS, message_id_of

IMAP_WRITES = ("append", "store", "move", "expunge")
DELETED = "\\Deleted"

# ------------------------------------------------------------------------------------------------
# The final state


@dataclass(frozen=True)
class FinalMessage:
    uid: int
    modseq: int
    flags: frozenset[str]
    message_id: str | None  # without angle brackets


@dataclass(frozen=True)
class FinalMailbox:
    uidvalidity: int
    highestmodseq: int
    uidnext: int
    messages: tuple[FinalMessage, ...]


@dataclass
class FinalState:
    """What the store holds once the load has stopped: account → mailbox name → contents."""

    accounts: dict[str, dict[str, FinalMailbox]]
    at: float  # when it was read (time.time()): after every operation of the history

    def uidls(self, account: str, mailbox: str = "INBOX") -> set[str]:
        """The POP3 unique ids of a mailbox ("UIDVALIDITY.UID")."""
        box = self.accounts.get(account, {}).get(mailbox)
        return {f"{box.uidvalidity}.{m.uid}" for m in box.messages} if box else set()

    def message_ids(self, account: str, mailbox: str | None = None) -> set[str]:
        boxes = self.accounts.get(account, {})
        return {
            m.message_id
            for name, box in boxes.items()
            if mailbox is None or name == mailbox
            for m in box.messages
            if m.message_id is not None
        }


# `PgSchema.query` (or any runner that takes `async fn(store)` and returns its result).
Query = Callable[[Callable[[Any], Awaitable[FinalState]]], FinalState]


def final_state(query: Query, accounts: Iterable[str], at: float) -> FinalState:
    """Every mailbox of `accounts` read through the store API: UIDVALIDITY, HIGHESTMODSEQ, and each
    message's UID, MODSEQ, flags and Message-ID. `at` is a time after the load stopped."""
    wanted = list(accounts)

    async def read(store: Any) -> FinalState:
        found: dict[str, dict[str, FinalMailbox]] = {}
        for address in wanted:
            account = await store.get_account(address)
            if account is None:
                continue
            boxes: dict[str, FinalMailbox] = {}
            for box in await store.list_mailboxes(account.id):
                status = await store.mailbox_status(account.id, box.id)
                rows = await store.messages(account.id, box.id)
                messages = []
                for start in range(0, len(rows), 200):
                    chunk = rows[start : start + 200]
                    bodies = await store.bodies(account.id, box.id, [r.uid for r in chunk])
                    messages += [
                        FinalMessage(
                            uid=r.uid,
                            modseq=r.modseq,
                            flags=frozenset(r.flags) - IGNORED_FLAGS,
                            message_id=message_id_of(bytes(bodies.get(r.uid, b""))),
                        )
                        for r in chunk
                    ]
                boxes[box.name] = FinalMailbox(
                    uidvalidity=status.uidvalidity if status else box.uidvalidity,
                    highestmodseq=status.highestmodseq if status else box.highestmodseq,
                    uidnext=status.uidnext if status else box.uidnext,
                    messages=tuple(messages),
                )
            found[address] = boxes
        return FinalState(found, at)

    return query(read)


# ------------------------------------------------------------------------------------------------
# All checks


def check_mailboxes(
    ops: list[Op], final: FinalState, acknowledged: dict[str, set[str]] | None = None
) -> list[Violation]:
    """Every IMAP and POP3 rule; `acknowledged`: the Message-IDs MX acknowledged to each POP3
    account (without angle brackets)."""
    return (
        check_imap_messages(ops, final)
        + check_uid_reuse(ops, final)
        + check_uidvalidity(ops, final)
        + check_modseq(ops, final)
        + check_pop3(ops, final, acknowledged or {})
    )


def _end(op: Op) -> float:
    return op.end if op.end else math.inf


# ------------------------------------------------------------------------------------------------
# IMAP messages: APPENDs kept, flags, moves and expunges


# A possible state of one message: (mailbox, uid, flags); mailbox "" = not created, "-" = gone.
State = tuple[str, int | None, frozenset[str]]
ABSENT: State = ("", None, frozenset())
GONE: State = ("-", None, frozenset())


def _apply(op: Op, state: State) -> set[State]:
    """The states `op` leads to from `state` when it happens (two for a half-done expunge)."""
    a, r = op.args, op.result
    box, uid, flags = state
    if op.f == "append":
        if state != ABSENT:
            return {state}
        return {(a["mailbox"], r.get("uid"), frozenset(a["flags"]))}
    if box != a["mailbox"] or uid != a["uid"]:
        return {state}  # not where the command looked: it changes nothing
    if op.f == "store":
        changed = set(a["flags"])
        return {(box, uid, flags | changed if a["mode"] == "+" else flags - changed)}
    if op.f == "move":
        if op.outcome == OK and "target_uid" not in r:
            return {state}  # the server moved nothing; `_placements` judges that
        return {(a["target"], r.get("target_uid"), flags)}
    if op.f == "expunge":
        if op.outcome == OK:
            return {GONE}
        return {GONE, (box, uid, flags | {DELETED})}  # \Deleted set, UID EXPUNGE not done
    return {state}


def possible_states(chain: list[Op], a: float, b: float) -> set[State]:
    """What a message may look like to an observation over [a, b]."""
    states = {ABSENT}
    for op in chain:
        if op.start >= b or op.outcome == FAIL:
            continue
        after = {s2 for s in states for s2 in _apply(op, s)}
        certain = op.outcome == OK and _end(op) <= a
        states = after if certain else states | after
        if len(states) > 64:  # cannot happen with the workers' rule; keep a bad history bounded
            break
    return states


@dataclass
class _Seen:
    """What one observation shows of one message in one mailbox (or the whole account)."""

    op: int | None  # the read; None: the final state
    a: float
    b: float
    mailboxes: tuple[str, ...]  # the mailboxes it covers
    entries: list[tuple[str, int, frozenset[str]]]  # (mailbox, uid, flags) where it was seen


def _matches(state: State, seen: _Seen, flags_too: bool) -> bool:
    box, uid, flags = state
    if box not in seen.mailboxes:
        return not seen.entries
    if len(seen.entries) != 1:
        return False
    e_box, e_uid, e_flags = seen.entries[0]
    if e_box != box or (uid is not None and uid != e_uid):
        return False
    return not flags_too or e_flags == flags


def _judge(mid: str, chain: list[Op], seen: _Seen) -> Violation | None:
    states = possible_states(chain, seen.a, seen.b)
    if any(_matches(s, seen, True) for s in states):
        return None
    where = "the final state" if seen.op is None else f"read #{seen.op}"
    placed = [s for s in states if _matches(s, seen, False)]
    if placed:
        rule = "flags-wrong"
    elif len(seen.entries) > 1:
        rule = "message-duplicated"
    elif not seen.entries:
        rule = "append-lost"
    elif all(s[0] in ("", "-") for s in states):
        expunged = any(op.f == "expunge" and op.outcome == OK for op in chain)
        appended = any(op.f == "append" and op.outcome != FAIL for op in chain)
        rule = "expunged-returned" if expunged else "appeared" if not appended else "misplaced"
    else:
        rule = "misplaced"
    shown = sorted(states, key=repr)
    return Violation(
        rule,
        f"<{mid}> in {where}: seen {sorted(seen.entries, key=repr)}, possible {shown}",
        seen.a if seen.op is not None else (chain[-1].end if chain else seen.a),
        [op.id for op in chain] + ([seen.op] if seen.op is not None else []),
    )


def _imap_chains(ops: list[Op]) -> dict[tuple[str, str], list[Op]]:
    chains: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops:
        if op.f in IMAP_WRITES and "message_id" in op.args:
            chains[(op.args["account"], op.args["message_id"])].append(op)
    for chain in chains.values():
        chain.sort(key=lambda op: op.start)
    return chains


def _presence(chains: dict[tuple[str, str], list[Op]]) -> dict[tuple[str, str], list]:  # type: ignore[type-arg]
    """Per (account, mailbox): (time it may leave, time it may enter, message id), sorted by the
    first; a message outside [enter, leave) of a mailbox is certainly not there."""
    index: dict[tuple[str, str], list] = defaultdict(list)  # type: ignore[type-arg]
    for (account, mid), chain in chains.items():
        for n, op in enumerate(chain):
            if op.outcome == FAIL:
                continue
            if op.f == "append":
                box = op.args["mailbox"]
            elif op.f == "move":
                box = op.args["target"]
            else:
                continue
            leave = math.inf
            for later in chain[n + 1 :]:
                if (
                    later.outcome == OK
                    and later.f in ("move", "expunge")
                    and later.args["mailbox"] == box
                    and (later.f == "expunge" or "target_uid" in later.result)
                ):
                    leave = _end(later)
                    break
            index[(account, box)].append((leave, op.start, mid))
    for entries in index.values():
        entries.sort()
    return index


def check_imap_messages(ops: list[Op], final: FinalState) -> list[Violation]:
    """Every read and the final state agree with the writes: an APPEND that got OK is there with
    the flags of its last OK change, moved where an OK MOVE put it, gone after an OK expunge."""
    chains = _imap_chains(ops)
    presence = _presence(chains)
    violations: list[Violation] = []
    for read in ops:
        if read.f != "read" or read.outcome != OK:
            continue
        account, box = read.args["account"], read.args["mailbox"]
        shown: dict[str, list[tuple[str, int, frozenset[str]]]] = defaultdict(list)
        for uid, mid, flags, _ in read.result.get("messages", []):
            if mid is not None:
                shown[mid].append((box, uid, frozenset(flags)))
        candidates = set(shown)
        entries = presence.get((account, box), [])
        for leave, enter, mid in entries[bisect.bisect_right(entries, (read.start,)) :]:
            if enter < _end(read) and leave > read.start:
                candidates.add(mid)
        for mid in sorted(candidates):
            chain = chains.get((account, mid))
            if chain is None:
                continue  # not a worker's message (delivered by MX, say)
            seen = _Seen(read.id, read.start, _end(read), (box,), shown.get(mid, []))
            if (v := _judge(mid, chain, seen)) is not None:
                violations.append(v)
        # A MOVE that got OK without moving anything said the message was not there.
    for op in ops:
        if op.f == "move" and op.outcome == OK and "target_uid" not in op.result:
            chain = chains[(op.args["account"], op.args["message_id"])]
            states = possible_states(chain, op.start, op.start)
            if all(s[0] == op.args["mailbox"] and s[1] == op.args["uid"] for s in states):
                violations.append(
                    Violation(
                        "move-missed",
                        f"<{op.args['message_id']}>: UID MOVE moved nothing, possible {states}",
                        op.start,
                        [o.id for o in chain],
                    )
                )
    accounts = {account for account, _ in chains}
    for account in sorted(accounts):
        boxes = final.accounts.get(account, {})
        shown = defaultdict(list)
        for name, fbox in boxes.items():
            for m in fbox.messages:
                if m.message_id is not None:
                    shown[m.message_id].append((name, m.uid, m.flags))
        for (acc, mid), chain in sorted(chains.items()):
            if acc != account:
                continue
            seen = _Seen(None, final.at, final.at, tuple(boxes), shown.get(mid, []))
            if (v := _judge(mid, chain, seen)) is not None:
                violations.append(v)
    return violations


# ------------------------------------------------------------------------------------------------
# UIDs, UIDVALIDITY, MODSEQ


# (account, mailbox, uidvalidity, uid) → message id, from one op (None: the final state)
_UidFact = tuple[tuple[str, str, int, int], str, int | None]


def _uid_facts(ops: list[Op], final: FinalState) -> list[_UidFact]:
    facts: list[_UidFact] = []
    for op in ops:
        a, r = op.args, op.result
        if op.outcome != OK:
            continue
        if op.f == "append" and "uid" in r:
            facts.append(
                ((a["account"], a["mailbox"], r["uidvalidity"], r["uid"]), a["message_id"], op.id)
            )
        elif op.f == "move" and "target_uid" in r:
            key = (a["account"], a["target"], r["target_uidvalidity"], r["target_uid"])
            facts.append((key, a["message_id"], op.id))
        elif op.f == "read":
            for uid, mid, _, _ in r.get("messages", []):
                if mid is not None:
                    key = (a["account"], a["mailbox"], r["uidvalidity"], uid)
                    facts.append((key, mid, op.id))
        elif op.f == "pop3-retr" and r.get("message_id"):
            validity, _, uid = str(a["uidl"]).partition(".")
            if validity.isdigit() and uid.isdigit():
                key = (a["account"], "INBOX", int(validity), int(uid))
                facts.append((key, r["message_id"], op.id))
    for account, boxes in final.accounts.items():
        for name, box in boxes.items():
            for m in box.messages:
                if m.message_id is not None:
                    facts.append(((account, name, box.uidvalidity, m.uid), m.message_id, None))
    return facts


def check_uid_reuse(ops: list[Op], final: FinalState) -> list[Violation]:
    """A (mailbox, UIDVALIDITY, UID) names one message for ever."""
    first: dict[tuple[str, str, int, int], tuple[str, int | None]] = {}
    violations = []
    reported: set[tuple[str, str, int, int]] = set()
    for key, mid, op_id in _uid_facts(ops, final):
        if key not in first:
            first[key] = (mid, op_id)
            continue
        mid0, op0 = first[key]
        if mid0 != mid and key not in reported:
            reported.add(key)
            account, box, validity, uid = key
            involved = [i for i in (op0, op_id) if i is not None]
            violations.append(
                Violation(
                    "uid-reused",
                    f"{account} {box} UIDVALIDITY {validity} UID {uid}: <{mid0}> and <{mid}>",
                    ops[involved[-1]].start if involved else final.at,
                    involved,
                )
            )
    return violations


def check_uidvalidity(ops: list[Op], final: FinalState) -> list[Violation]:
    """mailfort fixes a mailbox's UIDVALIDITY when it is created: a change makes every UID a
    client holds meaningless, so it would have to be announced; it must never happen here."""
    seen: dict[tuple[str, str], tuple[int, int | None]] = {}
    reported: set[tuple[str, str]] = set()
    violations = []
    facts: list[tuple[tuple[str, str], int, int | None]] = []
    for op in ops:
        if op.outcome != OK:
            continue
        if op.f in ("read", "select", "append"):
            facts.append(
                ((op.args["account"], op.args["mailbox"]), op.result.get("uidvalidity", 0), op.id)
            )
        elif op.f == "move" and "target_uidvalidity" in op.result:
            facts.append(
                ((op.args["account"], op.args["target"]), op.result["target_uidvalidity"], op.id)
            )
    for account, boxes in final.accounts.items():
        for name, box in boxes.items():
            facts.append(((account, name), box.uidvalidity, None))
    for key, validity, op_id in facts:
        if not validity:
            continue
        if key not in seen:
            seen[key] = (validity, op_id)
        elif seen[key][0] != validity and key not in reported:
            reported.add(key)
            involved = [i for i in (seen[key][1], op_id) if i is not None]
            violations.append(
                Violation(
                    "uidvalidity-changed",
                    f"{key[0]} {key[1]}: UIDVALIDITY {seen[key][0]} then {validity}",
                    ops[involved[-1]].start if involved else final.at,
                    involved,
                )
            )
    return violations


# One observation of a MODSEQ: (start, end, value, op id or None for the final state).
_Obs = tuple[float, float, int, int | None]


def _backwards(rule: str, what: str, observations: list[_Obs], ops: list[Op]) -> list[Violation]:
    """An observation that started after another ended must not show a lower value."""
    by_end = sorted(observations, key=lambda o: o[1])
    violations = []
    best: _Obs | None = None
    n = 0
    for obs in sorted(observations, key=lambda o: o[0]):
        while n < len(by_end) and by_end[n][1] < obs[0]:
            if best is None or by_end[n][2] > best[2]:
                best = by_end[n]
            n += 1
        if best is not None and obs[2] < best[2]:
            involved = [i for i in (best[3], obs[3]) if i is not None]
            violations.append(Violation(rule, f"{what}: {best[2]} then {obs[2]}", obs[0], involved))
    return violations


def check_modseq(ops: list[Op], final: FinalState) -> list[Violation]:
    """HIGHESTMODSEQ of a mailbox and MODSEQ of a message never go backwards; the final state's
    HIGHESTMODSEQ is at least each of its messages' MODSEQ."""
    boxes: dict[tuple[str, str, int], list[_Obs]] = defaultdict(list)
    messages: dict[tuple[str, str, int, int], list[_Obs]] = defaultdict(list)
    for op in ops:
        a, r = op.args, op.result
        if op.outcome != OK:
            continue
        if op.f in ("read", "select") and r.get("highestmodseq"):
            boxes[(a["account"], a["mailbox"], r["uidvalidity"])].append(
                (op.start, _end(op), r["highestmodseq"], op.id)
            )
            for uid, _, _, modseq in r.get("messages", []):
                if modseq:
                    key = (a["account"], a["mailbox"], r["uidvalidity"], uid)
                    messages[key].append((op.start, _end(op), modseq, op.id))
        elif op.f == "store" and r.get("modseq"):
            key = (a["account"], a["mailbox"], a["uidvalidity"], a["uid"])
            messages[key].append((op.start, _end(op), r["modseq"], op.id))
    violations: list[Violation] = []
    for account, fboxes in final.accounts.items():
        for name, box in fboxes.items():
            boxes[(account, name, box.uidvalidity)].append(
                (final.at, final.at, box.highestmodseq, None)
            )
            for m in box.messages:
                messages[(account, name, box.uidvalidity, m.uid)].append(
                    (final.at, final.at, m.modseq, None)
                )
                if m.modseq > box.highestmodseq:
                    violations.append(
                        Violation(
                            "modseq-above-highest",
                            f"{account} {name} UID {m.uid}: MODSEQ {m.modseq} > "
                            f"HIGHESTMODSEQ {box.highestmodseq}",
                            final.at,
                        )
                    )
    for (account, name, validity), observations in boxes.items():
        what = f"{account} {name} ({validity}) HIGHESTMODSEQ"
        violations += _backwards("modseq-backwards", what, observations, ops)
    for (account, name, validity, uid), observations in messages.items():
        what = f"{account} {name} ({validity}) UID {uid} MODSEQ"
        violations += _backwards("modseq-backwards", what, observations, ops)
    return violations


# ------------------------------------------------------------------------------------------------
# POP3


@dataclass
class Pop3Session:
    account: str
    session: str
    start: float
    end: float
    uidls: list[str] | None = None  # the listing at login (None: not listed)
    listed_at: float = 0.0
    deleted: dict[str, str] = field(default_factory=dict)  # uidl → message id
    quit: str | None = None  # the QUIT's outcome; None: no QUIT was sent
    ops: list[int] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return self.quit == OK

    @property
    def may_commit(self) -> bool:
        return self.quit in (OK, UNKNOWN)


def pop3_sessions(ops: list[Op]) -> list[Pop3Session]:
    sessions: dict[tuple[str, str], Pop3Session] = {}
    for op in sorted((o for o in ops if o.f.startswith("pop3-")), key=lambda o: o.start):
        key = (op.args["account"], op.args["session"])
        s = sessions.get(key)
        if s is None:
            s = sessions[key] = Pop3Session(key[0], key[1], op.start, _end(op))
        s.end = max(s.end, _end(op))
        s.ops.append(op.id)
        if op.f == "pop3-list" and op.outcome == OK:
            s.uidls, s.listed_at = list(op.result["uidls"]), op.start
        elif op.f == "pop3-dele" and op.outcome != FAIL:
            s.deleted[op.args["uidl"]] = op.args["message_id"]
        elif op.f in ("pop3-quit", "pop3-drop"):
            s.deleted.update({u: m for u, m in op.args.get("deleted", [])})
            s.quit = op.outcome if op.f == "pop3-quit" else None
    return list(sessions.values())


@dataclass
class Pop3Deletions:
    """Message-IDs the POP3 sessions deleted, per account: `certain` (QUIT got +OK) and
    `possible` (QUIT got no answer: deleted or not, all of the session's together)."""

    certain: dict[str, set[str]]
    possible: dict[str, set[str]]

    def all(self, account: str) -> set[str]:
        return self.certain.get(account, set()) | self.possible.get(account, set())


def pop3_deletions(ops: list[Op]) -> Pop3Deletions:
    certain: dict[str, set[str]] = defaultdict(set)
    possible: dict[str, set[str]] = defaultdict(set)
    for s in pop3_sessions(ops):
        if s.committed:
            certain[s.account] |= set(s.deleted.values())
        elif s.may_commit:
            possible[s.account] |= set(s.deleted.values())
    return Pop3Deletions(dict(certain), dict(possible))


def check_pop3(
    ops: list[Op], final: FinalState, acknowledged: dict[str, set[str]]
) -> list[Violation]:
    """Deletions at QUIT are all or nothing: QUIT +OK → all gone; QUIT unanswered → all or none
    gone; no QUIT (or -ERR) → none gone. A message MX acknowledged to a POP3 account is there at
    the end or was deleted by a session that may have committed."""
    sessions = pop3_sessions(ops)
    violations: list[Violation] = []
    deleters: dict[tuple[str, str], list[Pop3Session]] = defaultdict(list)
    for s in sessions:
        if s.may_commit:
            for uidl in s.deleted:
                deleters[(s.account, uidl)].append(s)
    listings = [s for s in sessions if s.uidls is not None]
    for s in sessions:
        if not s.deleted:
            continue
        present = final.uidls(s.account)
        own = [u for u in s.deleted if all(d is s for d in deleters[(s.account, u)])]
        if s.committed:
            for u in sorted(s.deleted):
                if u in present:
                    violations.append(
                        _pop3("pop3-delete-lost", s, u, "still there at the end", final.at)
                    )
                for later in listings:
                    if later.account == s.account and later.listed_at > s.end and u in later.uidls:  # type: ignore[operator]
                        violations.append(
                            _pop3(
                                "pop3-deleted-returned",
                                s,
                                u,
                                f"listed by {later.session}",
                                later.listed_at,
                                later,
                            )
                        )
        elif s.may_commit:
            kept = sorted(u for u in own if u in present)
            gone = sorted(u for u in own if u not in present)
            if kept and gone:
                violations.append(
                    _pop3("pop3-partial-delete", s, ",".join(gone), f"gone, {kept} kept", final.at)
                )
        else:
            for u in sorted(s.deleted):
                others = deleters[(s.account, u)]
                first_other = min((d.start for d in others), default=math.inf)
                if u in own and u not in present:
                    violations.append(
                        _pop3("pop3-deleted-without-quit", s, u, "gone at the end", final.at)
                    )
                for later in listings:
                    if (
                        later.account == s.account
                        and s.end < later.listed_at < first_other
                        and u not in later.uidls  # type: ignore[operator]
                    ):
                        violations.append(
                            _pop3(
                                "pop3-deleted-without-quit",
                                s,
                                u,
                                f"missing in {later.session}",
                                later.listed_at,
                                later,
                            )
                        )
    deletions = pop3_deletions(ops)
    for account, mids in sorted(acknowledged.items()):
        there = final.message_ids(account)
        for mid in sorted(mids - there - deletions.all(account)):
            violations.append(
                Violation(
                    "acknowledged-lost",
                    f"<{mid}> acknowledged to {account}: not in the store, no POP3 session"
                    " deleted it",
                    final.at,
                )
            )
    return violations


def _pop3(
    rule: str, s: Pop3Session, uidl: str, what: str, at: float, other: Pop3Session | None = None
) -> Violation:
    involved = s.ops + (other.ops if other else [])
    return Violation(
        rule,
        f"{s.account} session {s.session} (QUIT {s.quit or 'not sent'}) deleted {uidl}: {what}",
        at,
        involved,
    )


def mailbox_counts(ops: list[Op]) -> dict[str, int]:
    """Operations per kind and outcome ("append ok": 120), for a run's summary."""
    counts: dict[str, int] = defaultdict(int)
    for op in ops:
        if op.f in (*IMAP_WRITES, "read", "select") or op.f.startswith("pop3-"):
            counts[f"{op.f} {op.outcome}"] += 1
    return dict(sorted(counts.items()))
