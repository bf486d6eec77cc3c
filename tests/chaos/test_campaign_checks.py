"""The campaign's own parts on small hand-made histories: the schedule, the history, and the mail
checks (each rule once broken, once kept), so that a campaign with no violation means something."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.chaos.campaign.history import FAIL, OK, UNKNOWN, History, Op, Violation, around
from tests.chaos.campaign.mail_checks import MailState, check_mail, exposed
from tests.chaos.campaign.mx_load import Recipients
from tests.chaos.campaign.nemesis import DB_FAULTS, NODE_FAULTS, schedule
from tests.smtpsink import Transaction

RECIPIENTS = Recipients(
    kept=("kept0@example.test",),
    pop3=("pop0@example.test",),
    forwards=(("fwd0@example.test", "far0@remote.test"),),
    submitter="sub@example.test",
    password="x",
)
T0 = 1_000_000.0


def test_a_schedule_is_a_function_of_its_seed() -> None:
    one = schedule(5, 300, 3, lease=3.0)
    assert one == schedule(5, 300, 3, lease=3.0)
    assert one != schedule(6, 300, 3, lease=3.0)


def test_a_tour_begins_with_every_kind_and_faults_never_overlap_on_a_target() -> None:
    faults = schedule(12, 600, 3, lease=3.0, every=1.0, tour=True)
    kinds = [*NODE_FAULTS, *DB_FAULTS]
    assert sorted(f.kind for f in faults[: len(kinds)]) == sorted(kinds)
    busy: dict[int, float] = {}
    for f in faults:
        assert f.at >= busy.get(f.node, 0.0), f
        busy[f.node] = f.at + f.seconds


def test_an_operation_that_raises_is_unknown_and_the_history_reads_back(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    with history.op("mx0", "send", "node-1", mid="a") as op:
        op.ok(code=250)
    with history.op("mx0", "send", "node-2", mid="b"):
        raise ConnectionResetError("gone")
    history.close()
    ops = History.load(tmp_path / "h.jsonl")
    assert [(o.args["mid"], o.outcome) for o in ops] == [("a", OK), ("b", UNKNOWN)]
    assert "ConnectionResetError" in ops[1].result["error"]
    text = around(ops, Violation("x", "y", ops[1].start, [1]))
    assert "#1 mx0 send on node-2" in text


def _send(i: int, mid: str, to: list[str], outcome: str, at: float) -> Op:
    return Op(i, "mx0", "send", "node-1", {"mid": mid, "to": to}, at, at + 0.1, outcome)


def _fault(i: int, kind: str, node: str, start: float, end: float) -> Op:
    return Op(i, "nemesis", kind, node, {}, start, end, OK)


def _copy(mid: str, node: str, at: float) -> Transaction:
    data = f"Message-ID: <{mid}@chaos.test>\r\n\r\nx\r\n".encode()
    return Transaction(
        0, "", False, "s@x", ("far0@remote.test",), (), data, True, at, f"{node}.cluster.test"
    )


def test_exposure_is_a_fault_on_the_copys_node_around_its_final_dot() -> None:
    kill = _fault(0, "kill", "node-1", T0 + 1.0, T0 + 4.0)
    assert exposed("node-1", T0, [kill]) is kill
    assert exposed("node-2", T0, [kill]) is None
    assert exposed("node-1", T0 - 10, [kill]) is None
    assert exposed("node-1", T0 + 20, [kill]) is None
    pause = _fault(1, "pause", "node-1", T0 - 5, T0 + 0.5)
    assert exposed("node-1", T0, [pause]) is pause  # woke and finished what it no longer held
    failover = _fault(2, "db-failover", "db", T0 + 0.5, T0 + 3)
    assert exposed("node-3", T0, [failover]) is failover
    # A clock jump costs no lease: leases go by the database's clock.
    assert exposed("node-1", T0, [_fault(3, "clock", "node-1", T0, T0 + 5)]) is None


def _rules(ops: list[Op], state: MailState) -> list[str]:
    return sorted(v.rule for v in check_mail(ops, state, RECIPIENTS).violations)


def _state(local: dict[str, list[str]], sink: list[Transaction], queued: int = 0) -> MailState:
    return MailState({a: Counter(m) for a, m in local.items()}, sink, queued)


def test_local_mail_acknowledged_once_is_kept_and_refused_mail_goes_nowhere() -> None:
    ops = [
        _send(0, "a", ["kept0@example.test"], OK, T0),
        _send(1, "b", ["kept0@example.test"], FAIL, T0),
        _send(2, "c", ["kept0@example.test"], UNKNOWN, T0),
    ]
    assert _rules(ops, _state({"kept0@example.test": ["a"]}, [])) == []
    assert _rules(ops, _state({"kept0@example.test": ["a", "c"]}, [])) == []
    assert _rules(ops, _state({"kept0@example.test": []}, [])) == ["local-not-once"]
    assert _rules(ops, _state({"kept0@example.test": ["a", "a"]}, [])) == [
        "local-duplicate",
        "local-not-once",
    ]
    assert _rules(ops, _state({"kept0@example.test": ["a", "b"]}, [])) == ["refused-but-delivered"]
    assert _rules(ops, _state({"kept0@example.test": ["a"]}, [], queued=1)) == ["queue-not-empty"]


def test_remote_mail_once_and_a_second_copy_only_after_a_fault_on_the_first() -> None:
    ops = [_send(0, "r", ["fwd0@example.test"], OK, T0)]
    local: dict[str, list[str]] = {}
    once = [_copy("r", "node-1", T0 + 1)]
    twice = [*once, _copy("r", "node-2", T0 + 5)]
    assert _rules(ops, _state(local, once)) == []
    assert _rules(ops, _state(local, [])) == ["remote-lost"]
    assert _rules(ops, _state(local, twice)) == ["remote-extra-copy"]
    killed = [*ops, _fault(1, "kill", "node-1", T0 + 1.3, T0 + 3)]
    assert _rules(killed, _state(local, twice)) == []
    # One lost answer explains one extra copy, not two.
    thrice = [*twice, _copy("r", "node-3", T0 + 9)]
    assert _rules(killed, _state(local, thrice)) == ["remote-extra-copy"]
    refused = [_send(0, "r", ["fwd0@example.test"], FAIL, T0)]
    assert _rules(refused, _state(local, once)) == ["refused-but-delivered"]
