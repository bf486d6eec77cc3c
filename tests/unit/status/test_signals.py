"""Thresholds judge signals; missing data is never an outage."""

from __future__ import annotations

import pytest

from mailfort.status import (
    Ceiling,
    Component,
    ComponentState,
    Floor,
    HealthSignals,
    LoginSignals,
    Protocol,
    Severity,
    StatusThresholds,
    assess,
)

OK = ComponentState.OPERATIONAL
DEG = ComponentState.DEGRADED
PART = ComponentState.PARTIAL_OUTAGE
MAJ = ComponentState.MAJOR_OUTAGE


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Severity.NORMAL), (1.0, Severity.NORMAL), (2.5, Severity.DEGRADED),
     (11.0, Severity.DOWN), (31.0, Severity.MAJOR)],
)  # fmt: skip
def test_ceiling(value: float | None, expected: Severity) -> None:
    assert Ceiling(2.0, 10.0, 30.0).judge("x", value).severity is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Severity.NORMAL), (0.95, Severity.NORMAL), (0.7, Severity.DEGRADED),
     (0.3, Severity.DOWN), (0.0, Severity.MAJOR)],
)  # fmt: skip
def test_floor(value: float | None, expected: Severity) -> None:
    assert Floor(0.8, 0.5, 0.1).judge("x", value).severity is expected


def test_limits_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        Ceiling(10.0, 2.0)
    with pytest.raises(ValueError):
        Floor(0.5, 0.8)


def logins(attempts: int, successes: int, p95: float | None = 0.1) -> dict[Protocol, LoginSignals]:
    return {Protocol.IMAP: LoginSignals(attempts, successes, p95)}


@pytest.mark.parametrize(
    ("signals", "component", "expected"),
    [
        (HealthSignals(), Component.INCOMING, OK),
        (HealthSignals(accept_to_mailbox_p95=0.4), Component.INCOMING, OK),
        (HealthSignals(accept_to_mailbox_p95=90), Component.INCOMING, DEG),
        (HealthSignals(accept_to_mailbox_p95=900), Component.INCOMING, PART),
        (HealthSignals(accept_to_mailbox_p95=7200), Component.INCOMING, MAJ),
        (HealthSignals(admission_refusals_per_minute={Protocol.SMTP: 500}), Component.INCOMING,
         PART),
        (HealthSignals(admission_refusals_per_minute={Protocol.SMTP: 500}), Component.IMAP, OK),
        (HealthSignals(store_commit_p95=3.0), Component.POP3, PART),
        (HealthSignals(store_commit_p95=30.0), Component.WEBMAIL, MAJ),
        (HealthSignals(live_nodes=2, expected_nodes=3), Component.IMAP, DEG),
        (HealthSignals(live_nodes=0, expected_nodes=3), Component.OUTGOING, MAJ),
        (HealthSignals(live_nodes=0, expected_nodes=0), Component.OUTGOING, OK),
        (HealthSignals(queue_depth=20_000), Component.OUTGOING, DEG),
        (HealthSignals(oldest_queue_age=5 * 3600), Component.OUTGOING, MAJ),
        (HealthSignals(remote_attempts=100, remote_successes=30), Component.OUTGOING, PART),
        # too few attempts to judge a rate
        (HealthSignals(remote_attempts=5, remote_successes=0), Component.OUTGOING, OK),
        (HealthSignals(logins=logins(100, 95)), Component.IMAP, OK),
        (HealthSignals(logins=logins(100, 70)), Component.IMAP, DEG),
        (HealthSignals(logins=logins(100, 0)), Component.IMAP, MAJ),
        (HealthSignals(logins=logins(100, 0)), Component.POP3, OK),
        (HealthSignals(logins=logins(5, 0)), Component.IMAP, OK),
        (HealthSignals(logins=logins(100, 100, 12.0)), Component.IMAP, PART),
        # too few logins to judge a p95 either: the slowest of five is not a p95
        (HealthSignals(logins=logins(5, 5, 12.0)), Component.IMAP, OK),
    ],
)  # fmt: skip
def test_assess_table(
    signals: HealthSignals, component: Component, expected: ComponentState
) -> None:
    assessment = assess(signals)[component]
    assert assessment.state is expected
    assert (assessment.findings == ()) == (expected is OK)


def test_worst_finding_wins_and_is_explained() -> None:
    signals = HealthSignals(store_commit_p95=0.5, logins=logins(100, 40))
    result = assess(signals, StatusThresholds(), [Component.IMAP])
    assert set(result) == {Component.IMAP}
    assert result[Component.IMAP].state is PART
    assert {(f.signal, f.severity) for f in result[Component.IMAP].findings} == {
        ("store_commit_p95", Severity.DEGRADED),
        ("login_success_rate", Severity.DOWN),
    }


def test_snapshot_is_frozen() -> None:
    source = {Protocol.SMTP: 1.0}
    signals = HealthSignals(admission_refusals_per_minute=source)
    source[Protocol.SMTP] = 999.0
    assert signals.refusals(Protocol.SMTP) == 1.0
    with pytest.raises(ValueError):
        LoginSignals(attempts=1, successes=2)
