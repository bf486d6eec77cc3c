"""The mail half of a campaign's load: senders that deliver to the nodes' MX and submit through
their submission port, each message with a Message-ID of its own, so that the checker can follow
it to a mailbox or to the remote MX.

Recipients are local users (kept: each acknowledged message must be there once at the end), the
POP3 users (whose sessions may delete them), and forwarding aliases whose mail goes to the remote
MX sink. An outcome is `ok` for `250`, `fail` for any other answer the server gave (a refusal:
the message must go nowhere), `unknown` when the connection broke before the answer.
"""

from __future__ import annotations

import random
import re
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.chaos.campaign.history import History, Op
from tests.rawclient import client_tls

MID = re.compile(rb"^Message-ID: <([^@>]+)@chaos\.test>", re.M)
Targets = Callable[
    [random.Random, str], tuple[str, str, int]
]  # (rng, listener) -> node, host, port


@dataclass(frozen=True)
class Recipients:
    kept: tuple[str, ...]  # local users nobody reads: every acknowledged message stays
    pop3: tuple[str, ...]  # local users a POP3 worker empties
    forwards: tuple[tuple[str, str], ...]  # alias -> remote address (the sink)
    submitter: str  # the account submissions authenticate as (and send From:)
    password: str

    def remote_of(self, address: str) -> str | None:
        return dict(self.forwards).get(address)


class MailSender:
    """One thread's worth of senders: MX deliveries and, now and then, a submission."""

    def __init__(
        self,
        name: str,
        history: History,
        targets: Targets,
        recipients: Recipients,
        seed: int,
        submit_share: float = 0.2,
        timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.history = history
        self.targets = targets
        self.recipients = recipients
        self.rng = random.Random(seed)
        self.submit_share = submit_share
        self.timeout = timeout
        self.n = 0

    def _choose(self) -> list[str]:
        r = self.rng.random()
        rc = self.recipients
        if r < 0.3:
            return [self.rng.choice(rc.forwards)[0]]
        if r < 0.55:
            return [self.rng.choice(rc.pop3)]
        if r < 0.65:  # one local and one remote in one transaction
            return [self.rng.choice(rc.kept), self.rng.choice(rc.forwards)[0]]
        return [self.rng.choice(rc.kept)]

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.once()
            time.sleep(self.rng.uniform(0.02, 0.1))

    def once(self) -> Op:
        self.n += 1
        mid = f"{self.name}-{self.n}"
        to = self._choose()
        submit = self.rng.random() < self.submit_share
        sender = self.recipients.submitter if submit else "sender@remote.test"
        body = (
            f"From: {sender}\r\nTo: {', '.join(to)}\r\nMessage-ID: <{mid}@chaos.test>\r\n"
            f"Subject: campaign {mid}\r\n\r\n"
            + "campaign payload line\r\n"
            * self.rng.randint(1, 60)
        ).encode()
        listener = "submissions" if submit else "smtp"
        node, host, port = self.targets(self.rng, listener)
        f = "submit" if submit else "send"
        with self.history.op(self.name, f, node, mid=mid, to=to) as op:
            code, text = self._transaction(listener, host, port, sender, to, body)
            if code == 250:
                op.ok(code=code)
            elif code:
                op.fail(code=code, text=text[:120])
            else:
                op.unknown(error=text[:120])
        return op

    def _transaction(
        self, listener: str, host: str, port: int, sender: str, to: list[str], body: bytes
    ) -> tuple[int, str]:
        """The answer to the message: (code, text); (0, why) when none came."""
        client: smtplib.SMTP
        try:
            if listener == "submissions":
                client = smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=client_tls())
            else:
                client = smtplib.SMTP(host, port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            # Nothing was said: a refused or timed-out connect sends no message.
            code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else -1
            return (code if code > 0 else 421), f"connect: {exc!r}"
        try:
            code, text = client.ehlo("campaign.test")
            if code != 250:
                return code, text.decode(errors="replace")
            if listener == "submissions":
                client.user, client.password = self.recipients.submitter, self.recipients.password
                try:
                    code, text = client.auth("PLAIN", client.auth_plain)
                except smtplib.SMTPAuthenticationError as exc:
                    return exc.smtp_code, exc.smtp_error.decode(errors="replace")
            code, text = client.mail(sender)
            if code != 250:
                return code, text.decode(errors="replace")
            for rcpt in to:
                code, text = client.rcpt(rcpt)
                if code not in (250, 251):
                    return code, text.decode(errors="replace")
            # Only from here on can the answer be lost with the message committed.
            try:
                code, text = client.data(body)
            except smtplib.SMTPResponseException as exc:
                return exc.smtp_code, exc.smtp_error.decode(errors="replace")
            except (OSError, smtplib.SMTPException) as exc:
                return 0, repr(exc)
            return code, text.decode(errors="replace")
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode(errors="replace")
        except (OSError, smtplib.SMTPException) as exc:
            # Before DATA a broken connection cannot have delivered anything.
            return 421, f"before DATA: {exc!r}"
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
