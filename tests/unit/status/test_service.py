"""The status service's pure parts: thresholds from config, the delayed-mail notice message."""

from __future__ import annotations

import calendar
import email
import email.policy
from email.message import EmailMessage

import pytest

from mailfort.config import StatusConfig
from mailfort.errors import ConfigError
from mailfort.status import Ceiling, Component, ComponentState, Floor, IncidentBook, StateChange
from mailfort.status.repository import DelayedAccount
from mailfort.status.service import notice_message, thresholds_from

AT = float(calendar.timegm((2026, 11, 26, 14, 2, 0)))


def test_defaults_with_overrides_and_min_attempts() -> None:
    t = thresholds_from(
        StatusConfig(
            thresholds={
                "store_commit_p95": [0.1, 1.0],
                "remote_success_rate": [0.9, 0.5, 0.1],
                "imap_login_success_rate": [0.6, 0.3],
            },
            remote_min_attempts=3,
            login_min_attempts=5,
        )
    )
    assert t.store_commit_p95 == Ceiling(0.1, 1.0)
    assert t.remote_success_rate == Floor(0.9, 0.5, 0.1)
    assert t.imap_login.success_rate == Floor(0.6, 0.3)
    assert t.pop3_login.success_rate == Floor(0.80, 0.50, 0.10)  # untouched default
    assert t.remote_min_attempts == 3
    assert {t.imap_login.min_attempts, t.submission_login.min_attempts} == {5}
    assert t.queue_depth == Ceiling(10_000, 100_000)


@pytest.mark.parametrize(
    ("name", "values"),
    [("no_such_signal", [1.0, 2.0]), ("remote_min_attempts", [1.0, 2.0]),
     ("store_commit_p95", [2.0, 1.0]), ("imap_login_min_attempts", [1.0, 2.0])],
)  # fmt: skip
def test_bad_overrides_name_their_key(name: str, values: list[float]) -> None:
    with pytest.raises(ConfigError, match=f"status.thresholds.{name}"):
        thresholds_from(StatusConfig(thresholds={name: values}))


def resolved_incident() -> object:
    book = IncidentBook()
    degraded = ComponentState.DEGRADED
    book.apply([StateChange(Component.OUTGOING, ComponentState.OPERATIONAL, degraded, AT)])
    (incident,) = book.apply(
        [StateChange(Component.OUTGOING, degraded, ComponentState.OPERATIONAL, AT + 1500)]
    )
    return incident


def test_the_notice_is_one_plain_text_message_in_english_and_german() -> None:
    incident = resolved_incident()
    raw = notice_message(
        DelayedAccount("alice@example.de", count=3, max_delay=1260.0),
        incident,  # type: ignore[arg-type]
        start=AT,
        end=AT + 1500,
        now=AT + 1510,
        provider="Example Mail",
        url="https://status.example/",
        hostname="mx.example.de",
    )
    assert b"\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")  # CRLF throughout
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["From"] == "Example Mail <postmaster@example.de>"
    assert msg["To"] == "alice@example.de"
    assert msg["Subject"] == ("Your mail was delayed / Ihre E-Mails wurden verzögert")
    assert msg["Message-ID"].endswith("@mx.example.de>") and msg["Date"]
    assert msg["MIME-Version"] == "1.0" and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    text = msg.get_content()
    assert "between 2026-11-26 14:02 and 2026-11-26 14:27 UTC" in text
    assert "3 of your messages were delayed, the longest by 21 minutes" in text
    assert "3 Ihrer Nachrichten wurden verzögert, die längste um 21 Minuten" in text
    assert "(Outgoing mail)" in text and "(Ausgehende E-Mails)" in text
    assert "https://status.example/" in text


def test_one_delayed_message_is_told_in_the_singular() -> None:
    raw = notice_message(
        DelayedAccount("bob@example.test", count=1, max_delay=20.0),
        resolved_incident(),  # type: ignore[arg-type]
        start=AT,
        end=AT + 60,
        now=AT + 60,
        provider="mailfort",
        url="http://127.0.0.1/",
        hostname="mx.test",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_content()
    assert "One of your messages was delayed by 1 minute" in text
    assert "Eine Ihrer Nachrichten wurde um 1 Minute verzögert" in text
