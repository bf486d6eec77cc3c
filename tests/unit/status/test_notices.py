"""The one-line notices: which component, which words, and nothing a protocol line cannot carry."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from mailfort.status import (
    Component,
    ComponentState,
    IncidentBook,
    StateChange,
)
from mailfort.status.notices import NoticeBoard, ascii_line, compose_lines
from mailfort.status.repository import StatusRepository
from mailfort.store.sqlite import SqliteStore

AT = float(calendar.timegm((2026, 11, 26, 14, 2, 0)))
URL = "https://status.example.test/"


def book_with_outage() -> IncidentBook:
    book = IncidentBook()
    book.apply(
        [StateChange(Component.IMAP, ComponentState.OPERATIONAL, ComponentState.DEGRADED, AT)]
    )
    return book


def test_an_open_incident_names_its_component_state_time_and_url() -> None:
    board = NoticeBoard(url=URL, clock=lambda: AT + 60)
    board.show(book_with_outage().open_incidents(), [])
    assert board.line(Component.IMAP) == (
        "IMAP: degraded performance since 14:02 UTC - https://status.example.test/"
    )
    assert board.line(Component.IMAP, "de") == (
        "IMAP: eingeschraenkt seit 14:02 UTC - https://status.example.test/"
    )
    assert board.line(Component.IMAP, "fr") == board.line(Component.IMAP)  # falls back to en
    assert board.line(Component.POP3) is None and not board.affected(Component.OUTGOING)


def test_a_recovered_component_of_an_open_incident_is_not_bothered() -> None:
    book = book_with_outage()
    book.apply(
        [StateChange(Component.POP3, ComponentState.OPERATIONAL, ComponentState.MAJOR_OUTAGE, AT)]
    )
    book.apply(
        [StateChange(Component.IMAP, ComponentState.DEGRADED, ComponentState.OPERATIONAL, AT + 9)]
    )
    (incident,) = book.open_incidents()
    lines = compose_lines([incident], [], AT + 10, URL)
    assert (Component.IMAP, "en") not in lines
    assert lines[(Component.POP3, "de")].startswith("POP3: gestoert seit 14:02 UTC")


def test_resolved_incidents_and_operator_incidents_without_components_say_nothing() -> None:
    book = book_with_outage()
    book.apply(
        [StateChange(Component.IMAP, ComponentState.DEGRADED, ComponentState.OPERATIONAL, AT + 5)]
    )
    book.open_incident(AT, "Webmail slow", "we look into it")
    assert compose_lines(book.incidents.values(), [], AT + 10, URL) == {}


def test_maintenance_in_progress_names_its_end_and_only_while_it_runs() -> None:
    book = IncidentBook()
    window = book.add_maintenance(
        "Disk upgrade", "new disks", AT, AT + 3600, components=[Component.INCOMING]
    )
    during = compose_lines([], [window], AT + 10, URL)
    assert during[(Component.INCOMING, "en")] == (
        "Incoming mail: maintenance until 15:02 UTC - https://status.example.test/"
    )
    assert compose_lines([], [window], AT - 10, URL) == {}
    assert compose_lines([], [window], AT + 3601, URL) == {}


def test_lines_are_one_short_printable_ascii_line() -> None:
    assert ascii_line("Störung\r\n* BYE injected\tüber") == "Stoerung * BYE injected ueber"
    long = ascii_line("x" * 500)
    assert len(long) == 200 and long.endswith("...")
    assert ascii_line("café – naïve") == "cafe - naive"


async def test_a_store_outage_keeps_the_last_known_lines(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mailfort.sqlite3")
    await store.open()
    await store.close()  # the store is away: every read fails
    board = NoticeBoard(StatusRepository(store), url=URL, clock=lambda: AT)
    board.show(book_with_outage().open_incidents(), [])
    before = board.line(Component.IMAP)
    with pytest.raises(Exception):  # noqa: B017 - whichever error the closed store raises
        await board.refresh()
    assert before is not None and board.line(Component.IMAP) == before
