"""Remote delivery by a real node: a name server and an SMTP sink on loopback play the Internet.

The node (a `mailfort serve` subprocess) looks up MX records at the test's name server (dnslib,
127.0.0.1) and delivers to the test's SMTP sink (aiosmtpd), which listens on 127.0.0.1 and
127.0.0.3 at one port (`[delivery] smtp_port`) and accepts, defers or rejects per recipient.
Mail enters as a user would send it: submission with STARTTLS and AUTH, or the MX port with an
alias that forwards to a remote address.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
import smtplib
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, client_tls
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess
from tests.polling import wait_for
from tests.smtpsink import ACCEPT, DEFER, REJECT, Sink

ALICE = "alice@example.test"
ALIASES = (
    ("fwd-gone@example.test", "gone-fwd@remote.test"),
    ("fwd-null@example.test", "gone-null@remote.test"),
)


def make_zone() -> Zone:
    z = Zone()
    for domain in ("remote.test", "sender.test"):
        z.add(domain, "MX", f"10 mx.{domain}.").add(f"mx.{domain}", "A", "127.0.0.1")
    z.add("pref.test", "MX", "20 low.pref.test.").add("pref.test", "MX", "10 high.pref.test.")
    z.add("low.pref.test", "A", "127.0.0.1").add("high.pref.test", "A", "127.0.0.3")
    z.add("fallback.test", "MX", "10 dead.fallback.test.")
    z.add("fallback.test", "MX", "20 alive.fallback.test.")
    z.add("dead.fallback.test", "A", "127.0.0.2").add("alive.fallback.test", "A", "127.0.0.1")
    z.add("nullmx.test", "MX", "0 .")
    return z


def delivery_config(dns: NameServer, sink: Sink, **overrides: object) -> str:
    values: dict[str, object] = {
        "dns_nameservers": f'["{dns.address}"]',
        "dns_timeout": 2.0,
        "smtp_port": sink.port,
        "retry_base": 0.3,
        "retry_max": 1.0,
        "connect_timeout": 2.0,
        "command_timeout": 10.0,
        "idle_timeout": 10.0,
    }
    values.update(overrides)
    lines = [f"{key} = {value}" for key, value in values.items()]
    lines += ["[delivery.transports]", f'"relayed.test" = "127.0.0.3:{sink.port}"']
    return "\n".join(lines) + "\n"


def start(root: Any, dns: NameServer, sink: Sink, name: str, **overrides: object) -> NodeProcess:
    proc = NodeProcess(root, name=name, delivery=delivery_config(dns, sink, **overrides))
    proc.provision(
        domains=("example.test",),
        users={ALICE: PASSWORD, "bob@example.test": PASSWORD},
        aliases=ALIASES,
    )
    return proc.start()


@pytest.fixture(scope="module")
def dns() -> Iterator[NameServer]:
    server = NameServer(make_zone()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    server = Sink(hosts=("127.0.0.1", "127.0.0.3"), tls_dir=tmp_path_factory.mktemp("tls"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, dns: NameServer, sink: Sink
) -> Iterator[NodeProcess]:
    proc = start(tmp_path_factory.mktemp("remote"), dns, sink, "remote1")
    yield proc
    proc.stop()


# -- helpers ------------------------------------------------------------------------------------
def message(subject: str, sender: str = ALICE) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: undisclosed-recipients:;\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def submit(node: NodeProcess, recipients: list[str], subject: str) -> bytes:
    data = message(subject)
    with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, PASSWORD)
        assert client.sendmail(ALICE, recipients, data) == {}
    return data


def via_mx(node: NodeProcess, sender: str, recipient: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        assert client.sendmail(sender, [recipient], message(subject, sender or "x@y.test")) == {}


def queue_empty(node: NodeProcess, subject: str | None = None) -> bool:
    items = node.queue()
    if subject is None:
        return not items
    return not any(subject.encode() in node.queue_body(i.queue_id) for i in items)


def dsns(node: NodeProcess, about: str) -> list[EmailMessage]:
    """DSNs in alice's INBOX about the message with subject `about`."""
    found = []
    for raw in node.inbox(ALICE):
        if b"MAILER-DAEMON" in raw and f"Subject: {about}".encode() in raw:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
    return found


def part(message: EmailMessage, index: int) -> EmailMessage:
    found = list(message.iter_parts())[index]
    assert isinstance(found, EmailMessage)
    return found


def report(dsn: EmailMessage) -> tuple[Message, list[Message]]:
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return blocks[0], blocks[1:]


def date(value: str) -> float:
    return email.utils.parsedate_to_datetime(value).timestamp()


# -- tests --------------------------------------------------------------------------------------
def test_several_recipients_in_one_transaction_then_a_reused_connection(
    node: NodeProcess, sink: Sink
) -> None:
    rcpts = ["r1@remote.test", "r2@remote.test", "r3@remote.test"]
    data = submit(node, rcpts, "three at once")
    (got,) = sink.wait_for(lambda: sink.received("r1@remote.test"), what="first message")
    assert got.recipients == tuple(rcpts)
    assert got.sender == ALICE and got.tls
    assert got.data.endswith(data)  # the node added only its Received line
    assert got.data.startswith(b"Received: from ")
    submit(node, ["r4@remote.test"], "second message")
    (again,) = sink.wait_for(lambda: sink.received("r4@remote.test"), what="second message")
    assert again.connection == got.connection
    wait_for(lambda: queue_empty(node), what="empty queue")
    wait_for(lambda: "event=remote_delivered" in node.log(), what="the delivery in the log")


def test_mail_leaves_from_the_configured_source_address(
    tmp_path: Path, dns: NameServer, sink: Sink
) -> None:
    """The address receivers check SPF and the PTR against is the one configured, not the
    kernel's choice (127.0.0.1 for any loopback destination)."""
    proc = start(tmp_path, dns, sink, "source1", source_address='"127.0.0.7"')
    try:
        submit(proc, ["from-seven@remote.test"], "from .7")
        (got,) = sink.wait_for(lambda: sink.received("from-seven@remote.test"), what="delivery")
        assert got.peer == "127.0.0.7"
    finally:
        proc.stop()


def test_a_4xx_is_retried_until_it_succeeds(node: NodeProcess, sink: Sink) -> None:
    sink.script("later@remote.test", DEFER, DEFER, ACCEPT)
    submit(node, ["later@remote.test"], "try again")
    sink.wait_for(lambda: sink.received("later@remote.test"), what="delivery after two 450s")
    wait_for(lambda: queue_empty(node), what="empty queue")

    def deferrals() -> list[str]:
        pattern = r"event=remote_deferred \S+ rcpt=later@remote\.test status=4\.2\.1"
        return re.findall(pattern, node.log())

    # The node writes its log in batches (every 0.5 s, later on a busy machine): wait for it.
    wait_for(lambda: len(deferrals()) >= 2, what="both deferrals in the log")
    assert len(deferrals()) == 2
    assert dsns(node, "try again") == []  # no warning: delay_warning is 4 h


def test_a_5xx_bounces_to_the_local_sender(node: NodeProcess, sink: Sink) -> None:
    sink.script("gone@remote.test", REJECT)
    submit(node, ["fine@remote.test", "gone@remote.test"], "partly bounced")
    (dsn,) = wait_for(lambda: dsns(node, "partly bounced"), what="the bounce")
    assert [t.recipients for t in sink.received("fine@remote.test")] == [("fine@remote.test",)]
    wait_for(lambda: queue_empty(node), what="empty queue")

    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mx.mailfort.test>"
    assert dsn["To"].addresses[0].addr_spec == ALICE
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["Return-Path"] == "<>"  # the envelope sender of the bounce is null
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    per_message, (rcpt,) = report(dsn)
    assert per_message["Reporting-MTA"] == "dns; mx.mailfort.test"
    assert abs(date(per_message["Arrival-Date"]) - time.time()) < 60
    assert rcpt["Final-Recipient"] == "rfc822; gone@remote.test"
    assert rcpt["Original-Recipient"] is None
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Remote-MTA"] == "dns; mx.remote.test"
    assert rcpt["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <gone@remote.test>")
    assert abs(date(rcpt["Last-Attempt-Date"]) - time.time()) < 60
    assert rcpt["Will-Retry-Until"] is None
    headers = part(dsn, 2).get_payload(decode=True)
    assert b"Subject: partly bounced" in headers and b"body of partly bounced" not in headers
    human = part(dsn, 0).get_content()
    assert "<gone@remote.test>" in human and "550 5.1.1" in human


def test_a_bounce_to_a_remote_sender_goes_out_from_the_null_sender(
    node: NodeProcess, sink: Sink
) -> None:
    sink.script("gone-fwd@remote.test", REJECT)
    via_mx(node, "someone@sender.test", "fwd-gone@example.test", "forwarded and bounced")
    (got,) = sink.wait_for(lambda: sink.received("someone@sender.test"), what="the bounce")
    assert got.sender == "<>"
    dsn = email.message_from_bytes(got.data, policy=email.policy.default)
    assert isinstance(dsn, EmailMessage)
    _, (rcpt,) = report(dsn)
    assert rcpt["Final-Recipient"] == "rfc822; gone-fwd@remote.test"
    assert rcpt["Original-Recipient"] == "rfc822; fwd-gone@example.test"
    assert rcpt["Status"] == "5.1.1"
    wait_for(lambda: queue_empty(node), what="empty queue")


def test_no_dsn_for_the_null_sender(node: NodeProcess, sink: Sink) -> None:
    sink.script("gone-null@remote.test", REJECT)
    via_mx(node, "", "fwd-null@example.test", "from nobody")
    wait_for(lambda: "event=bounce_suppressed" in node.log(), what="the suppressed bounce")
    wait_for(lambda: queue_empty(node), what="empty queue")
    time.sleep(0.5)  # a DSN would have been queued and delivered by now
    assert not [t for t in sink.received() if b"from nobody" in t.data and t.sender == "<>"]
    assert node.queue() == []


def test_a_null_mx_bounces_at_once(node: NodeProcess, sink: Sink) -> None:
    submit(node, ["x@nullmx.test"], "to a null mx")
    (dsn,) = wait_for(lambda: dsns(node, "to a null mx"), what="the bounce")
    _, (rcpt,) = report(dsn)
    assert rcpt["Status"] == "5.1.10"
    assert rcpt["Action"] == "failed"
    assert rcpt["Remote-MTA"] is None
    assert rcpt["Diagnostic-Code"].startswith("X-Mailfort; nullmx.test does not accept mail")
    wait_for(lambda: queue_empty(node), what="empty queue")


def test_mx_preference_fallback_and_transport_override(node: NodeProcess, sink: Sink) -> None:
    submit(node, ["a@pref.test", "b@fallback.test", "c@relayed.test"], "routing")
    for rcpt in ("a@pref.test", "b@fallback.test", "c@relayed.test"):
        sink.wait_for(lambda r=rcpt: sink.received(r), what=rcpt)
    assert sink.received("a@pref.test")[0].local == "127.0.0.3"  # MX 10, not MX 20
    assert sink.received("b@fallback.test")[0].local == "127.0.0.1"  # MX 10 refused
    assert sink.received("c@relayed.test")[0].local == "127.0.0.3"  # not in DNS at all
    wait_for(lambda: queue_empty(node), what="empty queue")


def test_queue_commands_show_what_happened(node: NodeProcess, sink: Sink) -> None:
    sink.script("stuck@remote.test", DEFER)
    submit(node, ["stuck@remote.test"], "stuck in the queue")
    (item,) = wait_for(
        lambda: [i for i in node.queue() if i.recipient == "stuck@remote.test" and i.attempts >= 2],
        what="two attempts",
    )
    listing = node.cli("queue", "list").stdout
    assert item.queue_id in listing and "-> stuck@remote.test" in listing
    assert "450 4.2.1" in listing
    shown = node.cli("queue", "show", item.queue_id).stdout
    assert "recipient: stuck@remote.test" in shown
    assert re.search(r"\d+ attempt\(s\), next in", shown), shown
    assert "last error: host mx.remote.test[127.0.0.1] said: 450 4.2.1" in shown
    assert "status 4.2.1 from mx.remote.test" in shown
    assert "Subject: stuck in the queue" in shown

    retried = node.cli("queue", "retry", item.queue_id)
    assert "1 recipient(s) due now" in retried.stdout
    sink.script("stuck@remote.test", ACCEPT)
    sink.wait_for(lambda: sink.received("stuck@remote.test"), timeout=5, what="after retry")
    wait_for(lambda: queue_empty(node), what="empty queue")

    sink.script("stuck2@remote.test", DEFER)
    submit(node, ["stuck2@remote.test"], "deleted from the queue")
    (item,) = wait_for(
        lambda: [i for i in node.queue() if i.recipient == "stuck2@remote.test" and i.attempts],
        what="an attempt",
    )
    done = node.cli("queue", "delete", item.queue_id)
    assert done.returncode == 0 and "deleted" in done.stdout
    assert f"event=queue_deleted id={item.queue_id}" in done.stderr
    assert node.queue() == []
    assert dsns(node, "deleted from the queue") == []


def test_delay_warning_then_expiry(
    tmp_path_factory: pytest.TempPathFactory, dns: NameServer, sink: Sink
) -> None:
    proc = start(
        tmp_path_factory.mktemp("short"),
        dns,
        sink,
        "remote2",
        lifetime=3.0,
        delay_warning=1.0,
        retry_base=0.2,
        retry_max=0.4,
    )
    try:
        sink.script("slow@remote.test", DEFER)
        submit(proc, ["slow@remote.test"], "slow one")
        first = wait_for(lambda: dsns(proc, "slow one"), timeout=10, what="the delay warning")
        warning = first[0]
        assert warning["Subject"] == "Delayed Mail (still being retried)"
        per_message, (rcpt,) = report(warning)
        assert rcpt["Action"] == "delayed" and rcpt["Status"] == "4.2.1"
        arrival = date(per_message["Arrival-Date"])
        assert abs(date(rcpt["Will-Retry-Until"]) - (arrival + 3.0)) <= 1.0

        both = wait_for(lambda: len(dsns(proc, "slow one")) >= 2 and dsns(proc, "slow one"))
        wait_for(lambda: queue_empty(proc), what="empty queue")
        time.sleep(0.3)
        assert len(dsns(proc, "slow one")) == 2  # one warning, one bounce
        bounce = both[1]
        assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
        _, (rcpt,) = report(bounce)
        assert rcpt["Action"] == "failed"
        assert rcpt["Status"] == "4.2.1"  # the last temporary failure, as Postfix reports it
        assert rcpt["Diagnostic-Code"].startswith("smtp; 450 4.2.1")
        assert "gave up after" in part(bounce, 0).get_content()
        attempts = re.findall(r"rcpt=slow@remote\.test status=4\.2\.1", proc.log())
        assert len(attempts) >= 3
    finally:
        proc.stop()
