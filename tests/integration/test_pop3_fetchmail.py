"""fetchmail (the Debian package) against a real node: --keep, incremental fetch by UIDL, and
messages delivered byte for byte (to an MDA that writes each one to a file).

fetchmail runs with a generated rcfile (mode 0600, as it demands), in the foreground, without
syslog, with its own home (pid file) and UID file; `no stripcr`, `no rewrite` and
`--invisible` keep it from changing the messages (no CR stripping, no address rewriting, no
Received header of its own). Exit status 0 means mail was fetched, 1 that there was none.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.protocol.pop3.response import to_crlf
from tests.conftest import PASSWORD, require_command
from tests.integration.pop3_support import append, deliver, start_pop3_node
from tests.nodeproc import NodeProcess

USERS = ["fm-keep@example.test", "fm-stls@example.test"]

DOTS = (
    b"From: ann@remote.test\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n..two dots\r\n.\r\nmid.dle\r\n...\r\nend\r\n"
)


def simple(subject: str) -> bytes:
    return f"From: ann@remote.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    require_command("fetchmail")
    proc = start_pop3_node(tmp_path_factory, USERS)
    yield proc
    proc.stop()


class Fetchmail:
    def __init__(self, root: Path, node: NodeProcess, user: str) -> None:
        self.root, self.node, self.user = root, node, user
        self.inbox = root / "fetched"
        self.inbox.mkdir()
        self.mda = root / "mda.sh"
        # One file per message, exactly the octets fetchmail hands over.
        self.mda.write_text('#!/bin/sh\nexec cat > "$(mktemp "$1/msg.XXXXXXXX")"\n')
        self.mda.chmod(0o755)
        self.runs = 0

    def run(self, *, implicit_tls: bool, keep: bool) -> subprocess.CompletedProcess[str]:
        port = self.node.ports["pop3s" if implicit_tls else "pop3"]
        # STLS is enforced with `sslproto auto` (without `ssl`); the certificate is self-signed.
        tls = "ssl" if implicit_tls else 'sslproto "auto"'
        rc = self.root / f"fetchmailrc{self.runs}"
        self.runs += 1
        text = (
            "set no syslog\n"
            f"poll 127.0.0.1 protocol POP3 port {port} uidl\n"
            f'  user "{self.user}" there with password "{PASSWORD}" is "nobody" here\n'
            f"  options {tls} no sslcertck {'keep' if keep else 'no keep'}"
            " no rewrite no stripcr no mimedecode\n"
            f'  mda "{self.mda} {self.inbox}"\n'
        )
        fd = os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        env = dict(os.environ, HOME=str(self.root), FETCHMAILHOME=str(self.root), LC_ALL="C")
        return subprocess.run(
            [
                require_command("fetchmail"),
                "--fetchmailrc",
                str(rc),
                "--idfile",
                str(self.root / "fetchids"),
                "--nodetach",
                "--nosyslog",
                "--invisible",
                "-v",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    def fetched(self) -> list[bytes]:
        return sorted(p.read_bytes() for p in self.inbox.iterdir())


def test_keep_then_incremental_by_uidl_byte_for_byte(node: NodeProcess, tmp_path: Path) -> None:
    user = USERS[0]
    deliver(node, user, simple("one"))
    deliver(node, user, DOTS)
    append(node, user, b"Subject: bare LF\n\nstored with bare line feeds\n.dot\n")
    stored = node.inbox(user)
    fetchmail = Fetchmail(tmp_path, node, user)

    done = fetchmail.run(implicit_tls=True, keep=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "POP3> UIDL" in done.stderr + done.stdout
    # What the server sends: the stored octets, with CRLF for the bare LFs of the third.
    assert fetchmail.fetched() == sorted(to_crlf(m) for m in stored)
    assert set(stored[:2]) <= set(fetchmail.fetched())  # the CRLF ones are unchanged
    assert node.inbox(user) == stored  # --keep: nothing deleted

    deliver(node, user, simple("four"))
    (new,) = [m for m in node.inbox(user) if m not in stored]
    before = fetchmail.fetched()
    done = fetchmail.run(implicit_tls=True, keep=True)
    assert done.returncode == 0, done.stdout + done.stderr
    after = fetchmail.fetched()
    assert len(after) == len(before) + 1  # only the new message
    assert sorted([*before, new]) == after

    done = fetchmail.run(implicit_tls=True, keep=True)
    assert done.returncode == 1, done.stdout + done.stderr  # nothing new
    assert fetchmail.fetched() == after
    assert len(node.inbox(user)) == 4


def test_fetch_over_stls_and_delete(node: NodeProcess, tmp_path: Path) -> None:
    user = USERS[1]
    deliver(node, user, simple("a"))
    deliver(node, user, DOTS)
    stored = node.inbox(user)
    fetchmail = Fetchmail(tmp_path, node, user)
    done = fetchmail.run(implicit_tls=False, keep=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "POP3> STLS" in log and "POP3> DELE 2" in log
    assert fetchmail.fetched() == sorted(stored)
    assert node.inbox(user) == []  # deleted at QUIT
