"""One submission over implicit TLS with smtplib, answered by the first refusal or the reply
to DATA: what the submission-limit tests send with."""

from __future__ import annotations

import contextlib
import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.nodeproc import NodeProcess
from tests.rawclient import client_tls

PASSWORD = "correct horse battery staple"


@contextlib.contextmanager
def running_node(root: Path, users: list[str], **settings: Any) -> Iterator[NodeProcess]:
    """A started node whose `users` all have PASSWORD; `settings` go to NodeProcess."""
    node = NodeProcess(root, **settings)
    node.provision(users=dict.fromkeys(users, PASSWORD))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def message(user: str, recipients: list[str], extra: bytes = b"") -> bytes:
    head = f"From: {user}\r\nTo: {', '.join(recipients)}\r\nSubject: {uuid.uuid4()}\r\n"
    return head.encode() + extra + b"\r\nhello\r\n"


def connect(port: int, user: str, password: str = PASSWORD) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls(), timeout=30)
    client.ehlo("client.test")
    client.login(user, password)
    return client


def submit(
    port: int, user: str, recipients: list[str], body: bytes | None = None
) -> tuple[int, bytes]:
    """The first refusal (MAIL, RCPT) or the reply to DATA."""
    client = connect(port, user)
    try:
        return transaction(client, user, recipients, body)
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def transaction(
    client: smtplib.SMTP, user: str, recipients: list[str], body: bytes | None = None
) -> tuple[int, bytes]:
    code, text = client.mail(user)
    if code != 250:
        return code, text
    for rcpt in recipients:
        code, text = client.rcpt(rcpt)
        if code != 250:
            client.rset()
            return code, text
    try:
        return client.data(body if body is not None else message(user, recipients))
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code, exc.smtp_error
