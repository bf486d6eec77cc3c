"""isync's mbsync (Debian package isync) doing a full two-way sync between a local Maildir and an
account over IMAPS: new mail and folders down, flag changes, deletions, new mail and folders up
and down, and a sync after that changes nothing on either side.
"""

from __future__ import annotations

import imaplib
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, deliver, imaps, require_command
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.usefixtures("no_tracebacks")

USER = "carol@other.test"

CONFIG = """\
IMAPAccount node
Host 127.0.0.1
Port {port}
User {user}
Pass "{password}"
SSLType IMAPS
CertificateFile {cert}
SystemCertificates no

IMAPStore remote
Account node

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
"""


def message(subject: str) -> bytes:
    head = f"From: x@remote.test\r\nTo: {USER}\r\nSubject: {subject}\r\n"
    return f"{head}\r\n{subject} body\r\n".encode()


def mbsync(config: Path) -> str:
    # -Ds: the sync's own log, one "-> log:" line per change it makes (isync 1.4).
    done = subprocess.run(
        [require_command("mbsync"), "-Ds", "-c", str(config), "-a"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert not re.search(r"(?im)^(error|warning)|IMAP error|unexpected", out), out
    return out


def changes(out: str) -> list[str]:
    return re.findall(r"(?m)^-> log: .*$", out)


def server(client: imaplib.IMAP4) -> dict[str, tuple[bytes, dict[bytes, bytes]]]:
    """{mailbox: (STATUS, {subject: flags})} of the account."""
    found = {}
    _, listing = client.list()
    for line in listing:
        name = line.split(b'"/" ')[1].decode()
        _, status = client.status(name, "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)")
        messages = {}
        client.select(name, readonly=True)
        _, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                messages[item[1].strip()] = flags[1] if flags else b"?"
        found[name] = (status[0], messages)
    return found


def local(maildir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(maildir)): p.read_bytes() for p in maildir.rglob("*") if p.is_file()}


def messages_in(maildir: Path, box: str) -> dict[str, str]:
    """{subject: maildir flags} of one local folder."""
    found = {}
    for path in (maildir / box).glob("*/*"):
        if path.parent.name in ("cur", "new"):
            subject = re.search(rb"(?m)^Subject: (.*?)\r?$", path.read_bytes())
            assert subject, path
            found[subject[1].decode()] = path.name.split(":2,")[1] if ":2," in path.name else ""
    return found


def test_two_way_sync_with_mbsync(node: NodeProcess, tmp_path: Path) -> None:
    require_command("mbsync")
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        CONFIG.format(
            port=node.ports["imaps"],
            user=USER,
            password=PASSWORD,
            maildir=maildir,
            cert=node.data_dir / "tls" / "cert.pem",
        )
    )
    for n in range(1, 6):
        deliver(node, USER, message(f"m{n}"))
    client = imaps(node, USER)
    assert client.create("Projects/alpha")[0] == "OK"
    assert client.append("Projects/alpha", "(\\Seen)", None, message("project"))[0] == "OK"

    # 1. Everything comes down: folders (with the hierarchy), messages, flags, bytes.
    mbsync(config)
    inbox = messages_in(maildir, "INBOX")
    assert inbox == {f"m{n}": "" for n in range(1, 6)}
    assert messages_in(maildir, "Projects/alpha") == {"project": "S"}
    for box in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (maildir / box / "cur").is_dir(), box
    stored = node.inbox(USER)
    # Maildir lines end in LF, and mbsync marks what it copies with an X-TUID header.
    got = sorted(
        re.sub(rb"(?m)^X-TUID: .*\n", b"", p.read_bytes()) for p in (maildir / "INBOX").glob("*/*")
    )
    assert got == sorted(m.replace(b"\r\n", b"\n") for m in stored)

    # 2. Changes on both sides.
    def path_of(subject: str) -> Path:
        for path in (maildir / "INBOX").glob("*/*"):
            if f"Subject: {subject}\n".encode() in path.read_bytes():
                return path
        raise AssertionError(subject)

    m1 = path_of("m1")
    (maildir / "INBOX" / "cur").mkdir(exist_ok=True)
    m1.rename(maildir / "INBOX" / "cur" / (m1.name.rpartition(":2,")[0] + ":2,F"))
    path_of("m2").unlink()
    (maildir / "INBOX" / "new" / "local1.host").write_bytes(
        b"From: carol@other.test\nTo: x@remote.test\nSubject: written here\n\nlocal body\n"
    )
    for sub in ("cur", "new", "tmp"):
        (maildir / "LocalOnly" / sub).mkdir(parents=True)
    (maildir / "LocalOnly" / "new" / "local2.host").write_bytes(
        b"From: carol@other.test\nSubject: local folder\n\nbody\n"
    )
    client.select("INBOX")
    uids = {
        re.search(rb"Subject: (\S+)", item[1])[1]: re.search(rb"UID (\d+)", item[0])[1]
        for item in client.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1]
        if isinstance(item, tuple)
    }
    client.uid("STORE", uids[b"m3"], "+FLAGS", "(\\Seen \\Answered)")
    client.uid("STORE", uids[b"m4"], "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.unselect()
    deliver(node, USER, message("m6"))

    out = mbsync(config)
    assert changes(out), out
    inbox = messages_in(maildir, "INBOX")
    assert inbox == {"m1": "F", "m3": "RS", "m5": "", "m6": "", "written here": ""}, inbox
    assert messages_in(maildir, "LocalOnly") == {"local folder": ""}
    remote = server(client)
    assert remote["INBOX"][1] == {
        b"Subject: m1": b"\\Flagged",
        b"Subject: m3": b"\\Answered \\Seen",
        b"Subject: m5": b"",
        b"Subject: m6": b"",
        b"Subject: written here": b"",
    }, remote["INBOX"][1]
    assert remote["LocalOnly"][1] == {b"Subject: local folder": b""}
    pushed = [m for m in node.inbox(USER) if b"Subject: written here" in m]
    assert len(pushed) == 1 and pushed[0].endswith(b"\r\n\r\nlocal body\r\n")  # CRLF on the wire

    # 3. Nothing left to do: a sync changes nothing on either side.
    before_local, before_remote = local(maildir), server(client)
    out = mbsync(config)
    assert changes(out) == [], out
    assert local(maildir) == before_local
    assert server(client) == before_remote
    client.logout()
