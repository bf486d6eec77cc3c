"""`mailfort status …` run as the operator runs it: a subprocess with a config file, SQLite."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeVar

import pytest

from mailfort.status.components import Component, ComponentState
from mailfort.status.incidents import Author, IncidentStatus, Origin
from mailfort.status.repository import PublishedComponent
from tests.integration.status_web_support import with_repository
from tests.nodeproc import NodeProcess

T = TypeVar("T")


@pytest.fixture
def node(tmp_path: Path) -> NodeProcess:
    proc = NodeProcess(tmp_path)
    proc.write_config()
    return proc


def ok(node: NodeProcess, *args: str) -> str:
    done = node.cli("status", *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def fails(node: NodeProcess, *args: str, status: int) -> str:
    done = node.cli("status", *args)
    assert done.returncode == status, (args, done.returncode, done.stdout, done.stderr)
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message  # one line, no traceback, no usage dump
    assert message.startswith("mailfort: ")
    return message


def test_an_incident_is_opened_updated_and_resolved(node: NodeProcess) -> None:
    before = time.time()
    incident_id = ok(
        node,
        "incident", "open", "--title", "Slow IMAP logins", "--text", "We are looking into it",
        "--component", "imap=degraded_performance", "--component", "pop3=partial_outage",
    ).strip()  # fmt: skip
    assert incident_id == "inc-1"
    shown = ok(node, "show")
    assert "Slow IMAP logins" in shown and "We are looking into it" in shown
    assert "imap: degraded performance" in shown

    assert "updated inc-1 (identified)" in ok(
        node, "incident", "update", "inc-1", "--text", "A disk is slow",
        "--status", "identified", "--component", "imap=major_outage",
    )  # fmt: skip
    assert "inc-1" in ok(node, "incident", "list")
    assert "resolved inc-1" in ok(node, "incident", "resolve", "inc-1", "--text", "Disk replaced")
    assert ok(node, "incident", "list").strip() == "no open incidents"
    assert "resolved" in ok(node, "incident", "list", "--all")

    stored = with_repository(node, lambda s: s.incident("inc-1"))
    assert stored is not None and stored.origin is Origin.OPERATOR
    assert [(e.status, e.author, e.text) for e in stored.timeline] == [
        (IncidentStatus.INVESTIGATING, Author.OPERATOR, "We are looking into it"),
        (IncidentStatus.IDENTIFIED, Author.OPERATOR, "A disk is slow"),
        (IncidentStatus.RESOLVED, Author.OPERATOR, "Disk replaced"),
    ]
    assert dict(stored.components) == {
        Component.IMAP: ComponentState.MAJOR_OUTAGE,
        Component.POP3: ComponentState.PARTIAL_OUTAGE,
    }
    assert stored.resolved_at is not None and before <= stored.resolved_at <= time.time()

    assert "is resolved" in fails(node, "incident", "update", "inc-1", "--text", "x", status=1)
    assert "no incident inc-9" in fails(
        node, "incident", "resolve", "inc-9", "--text", "x", status=1
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--component", "smtp=degraded"), "unknown component 'smtp'"),
        (("--component", "imap=broken"), "unknown state 'broken'"),
        (("--component", "imap"), "imap=partial_outage"),
        (("--status", "resolved"), "unknown status 'resolved'"),
        (("--status", "panicking"), "unknown status 'panicking'"),
    ],
)
def test_bad_incident_values_exit_2_with_one_line(
    node: NodeProcess, args: tuple[str, ...], expected: str
) -> None:
    message = fails(node, "incident", "open", "--title", "t", "--text", "x", *args, status=2)
    assert expected in message
    assert with_repository(node, lambda s: s.incidents()) == []


def test_maintenance_is_scheduled_listed_and_cancelled(node: NodeProcess) -> None:
    window_id = ok(
        node,
        "maintenance", "add", "--title", "Storage upgrade", "--text", "New disks",
        "--start", "2099-12-01T02:00Z", "--end", "2099-12-01T07:00+01:00", "--component", "imap",
    ).strip()  # fmt: skip
    assert window_id == "mnt-1"
    (window,) = with_repository(node, lambda s: s.maintenance(time.time()))
    assert window.starts_at == 4_099_773_600.0  # 2099-12-01 02:00 UTC
    assert window.ends_at == window.starts_at + 4 * 3600  # 07:00+01:00 is 06:00 UTC
    assert window.components == (Component.IMAP,)
    listed = ok(node, "maintenance", "list")
    assert "mnt-1" in listed and "2099-12-01 02:00 UTC - 2099-12-01 06:00 UTC" in listed
    assert "Storage upgrade" in ok(node, "show")

    assert "cancelled mnt-1" in ok(node, "maintenance", "cancel", "mnt-1", "--text", "postponed")
    assert ok(node, "maintenance", "list").strip() == "no maintenance scheduled"
    assert "cancelled" in ok(node, "maintenance", "list", "--all")
    assert "no maintenance mnt-7" in fails(
        node, "maintenance", "cancel", "mnt-7", "--text", "x", status=1
    )


@pytest.mark.parametrize(
    ("start", "end", "extra", "expected"),
    [
        ("2099-12-01T02:00", "2099-12-01T06:00Z", (), "has no time zone"),
        ("tomorrow", "2099-12-01T06:00Z", (), "not a time"),
        ("2099-12-01T06:00Z", "2099-12-01T02:00Z", (), "--end must be after --start"),
        ("2099-12-01T02:00Z", "2099-12-01T06:00Z", ("--component", "dns"), "unknown component"),
    ],
)
def test_bad_maintenance_values_exit_2_with_one_line(
    node: NodeProcess, start: str, end: str, extra: tuple[str, ...], expected: str
) -> None:
    message = fails(
        node, "maintenance", "add", "--title", "t", "--text", "x",
        "--start", start, "--end", end, *extra, status=2,
    )  # fmt: skip
    assert expected in message


def test_webhooks_are_added_listed_and_removed(node: NodeProcess) -> None:
    hook_id = ok(node, "webhook", "add", "https://hooks.example/status", "--component", "imap")
    hook_id = hook_id.strip()
    # Unguessable: the id is the capability to unsubscribe over the public API.
    assert hook_id.startswith("whk-") and len(hook_id) > 20
    assert "https://hooks.example/status  (imap;" in ok(node, "webhook", "list")
    assert "already exists" in fails(
        node, "webhook", "add", "https://hooks.example/status", status=1
    )
    assert "http or https" in fails(node, "webhook", "add", "file:///etc/passwd", status=2)
    assert f"removed webhook {hook_id}" in ok(node, "webhook", "remove", hook_id)
    assert ok(node, "webhook", "list").strip() == "no webhooks"
    assert f"no webhook {hook_id}" in fails(node, "webhook", "remove", hook_id, status=1)


def test_show_prints_what_the_status_leader_published(node: NodeProcess) -> None:
    published = PublishedComponent(Component.OUTGOING, ComponentState.PARTIAL_OUTAGE, 4e9)
    with_repository(node, lambda s: s.save_components({Component.OUTGOING: published}))
    shown = ok(node, "show")
    assert "Outgoing mail          partial outage since 2096-10-02 07:06 UTC" in shown
    assert "IMAP                   operational" in shown
    assert "open incidents: none" in shown and "maintenance: none scheduled" in shown
    incident = ok(node, "incident", "open", "--title", "t", "--text", "x", "--component",
                  "imap=major_outage", "--component", "outgoing=degraded").strip()  # fmt: skip
    shown = ok(node, "show")
    # What an operator declares is shown beside the measurement, as the page combines them.
    assert f"IMAP                   operational (measured); major outage per {incident}" in shown
    assert "Outgoing mail          partial outage since 2096-10-02 07:06 UTC\n" in shown


def test_help_explains_the_values_a_newcomer_must_type(node: NodeProcess) -> None:
    maintenance = node.cli("status", "maintenance", "add", "--help").stdout
    assert "ISO 8601 with a time zone" in maintenance and "2026-12-01T02:00Z" in maintenance
    incident = node.cli("status", "incident", "open", "--help").stdout
    assert "imap=partial_outage" in incident and "degraded_performance" in incident
    assert "investigating, identified, monitoring" in incident
