"""A full disk under a node on the embedded store: "not now", never "no", and nothing lost.

The node's data dir (SQLite database, its WAL, the message spool) is a small tmpfs of its own.
Under SMTP load a filler file takes every free byte; while the disk is full every answer is a
temporary one (SMTP 4xx, IMAP NO), the node stays up, and once the filler is gone mail is
accepted again without a restart. At the end every message that got 250 or OK is in its mailbox
exactly once.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import send, unexpected_tracebacks
from tests.conftest import PASSWORD
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

USER = "u@example.test"
_MID = re.compile(rb"^Message-ID: <([^@>]+)@disk\.test>", re.M)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "node" / "data"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _body(mid: str, lines: int = 300) -> bytes:
    return (
        f"From: s@remote.test\r\nTo: {USER}\r\nMessage-ID: <{mid}@disk.test>\r\n\r\n".encode()
        + b"full disk test line of text, long enough to fill a disk soon\r\n" * lines
    )


def _fill(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)


def _append_ok(imap: imaplib.IMAP4, body: bytes) -> tuple[str, list[bytes]] | None:
    """The APPEND's answer when it is OK; None after a temporary refusal (to be retried)."""
    typ, data = imap.append("INBOX", None, None, body)
    if typ == "OK":
        return typ, data
    assert b"[UNAVAILABLE]" in (data[0] or b""), data
    return None


def _imap(node: NodeProcess) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=15)
    client.starttls()
    client.login(USER, PASSWORD)
    return client


def test_a_full_disk_is_a_temporary_refusal(tmp_path: Path, small_disk: Path) -> None:
    node = NodeProcess(tmp_path / "node")
    node.provision(users={USER: PASSWORD})
    node.start()
    accepted: list[str] = []
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    stopping = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stopping.is_set():
            n += 1
            mid = f"w{worker}n{n}"
            code, text = send(node.ports["smtp"], [USER], _body(mid))
            with lock:
                answers.append((code, text))
                if code == 250:
                    accepted.append(mid)
            time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    appended: list[str] = []
    refused_appends: list[bytes] = []
    try:
        time.sleep(1.0)
        # Logged in before the disk fills: a login on a full disk is refused as a throttled
        # one (noted, not yet mended); this test is about the writes.
        imap = _imap(node)
        filler = small_disk / "filler"
        _fill(filler)
        full_from = len(answers)
        time.sleep(3.0)
        for n in range(2):
            mid = f"append{n}"
            typ, data = imap.append("INBOX", None, None, _body(mid))
            if typ == "OK":
                appended.append(mid)
            else:
                refused_appends.append(data[0] or b"")
        full = answers[full_from:]
        filler.unlink()
        time.sleep(2.0)
        mid = "append-after"
        # With room again the writes succeed; the adaptive limit, backed off by the failed
        # ones, may still refuse one for a moment (NO [UNAVAILABLE]), which a client retries.
        wait_for(lambda: _append_ok(imap, _body(mid)), 20, "an APPEND once the disk has room")
        appended.append(mid)
        imap.logout()
        recovered_from = len(answers)
        time.sleep(2.0)
    finally:
        stopping.set()
        for t in threads:
            t.join(timeout=30)
        alive = node.proc is not None and node.proc.poll() is None
        node.stop()
    assert alive, "the node died of a full disk"
    assert all(code == 250 or 400 <= code < 500 for code, _ in answers), [
        a for a in answers if not (a[0] == 250 or 400 <= a[0] < 500)
    ][:5]
    assert any(400 <= code < 500 for code, _ in full), "the disk never filled up"
    assert not any(b"Traceback" in text for _, text in answers)
    assert any(code == 250 for code, _ in answers[recovered_from:]), "no mail taken afterwards"
    assert all(not r.startswith(b"[ALERT]") for r in refused_appends)
    found = Counter(
        m.group(1).decode() for body in node.inbox(USER) if (m := _MID.search(body)) is not None
    )
    assert {mid: n for mid, n in found.items() if n != 1} == {}
    assert set(accepted) | set(appended) == set(found)
    assert not unexpected_tracebacks(node.log())
