"""What `mailfort serve` prints for a mail client's incoming settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mailfort.node import Listener, describe


def test_incoming_settings_name_each_served_port_plain_first() -> None:
    listeners = [
        Listener("imaps", "127.0.0.1", 2993, "IMAP with implicit TLS"),
        Listener("imap", "127.0.0.1", 2143, "IMAP"),
        Listener("pop3s", "127.0.0.1", 2995, "POP3 with implicit TLS"),
    ]
    node = SimpleNamespace(config=SimpleNamespace(node_name="n", data_dir=Path("var")),
                           listeners=listeners)  # fmt: skip
    text = describe(node)  # type: ignore[arg-type]
    assert (
        "Mail client (incoming): IMAP server 127.0.0.1, port 2143 (STARTTLS),"
        " port 2993 (SSL/TLS), normal password"
    ) in text
    pop3 = "Mail client (incoming): POP3 server 127.0.0.1, port 2995 (SSL/TLS), normal password"
    assert pop3 in text
