"""Shared helpers: run wire octets through the reader as a server would."""

from __future__ import annotations

from mailfort.protocol.imap.commands import Command
from mailfort.protocol.imap.framing import CommandReader, Event, Parsed


def events_of(wire: bytes, reader: CommandReader | None = None) -> list[Event]:
    return (reader or CommandReader()).feed(wire)


def command_of(wire: bytes) -> Command:
    """The one command that `wire` (CRLF-terminated, literals inline) frames and parses to."""
    parsed = [e for e in events_of(wire) if isinstance(e, Parsed)]
    assert len(parsed) == 1, events_of(wire)
    return parsed[0].command
