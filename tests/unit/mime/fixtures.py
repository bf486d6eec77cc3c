"""The hand-written messages in messages/.

They are kept with LF line endings so that no editor or git setting can change them; `load`
turns them into what a mail store holds (CRLF), except the `lf-*` ones, which are about bare LF.
Sizes in the tests are counted on the CRLF form: every line counts its length plus 2.
"""

from __future__ import annotations

from pathlib import Path

MESSAGES = Path(__file__).parent / "messages"


def load(name: str) -> bytes:
    data = (MESSAGES / name).read_bytes()
    return data if name.startswith("lf-") else data.replace(b"\n", b"\r\n")


def names() -> list[str]:
    return sorted(p.name for p in MESSAGES.glob("*.eml"))
