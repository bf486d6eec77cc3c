"""RFC 8058 one-click unsubscription survives submission: `List-Unsubscribe` (long, folded over
several lines) and `List-Unsubscribe-Post` arrive byte for byte at a remote MX and in a local
mailbox over IMAP. Gmail and Yahoo require both on bulk mail (since February 2024)."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess
from tests.rawclient import client_tls
from tests.smtpsink import Sink
from tests.submission_support import PASSWORD, message, running_node, submit

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@remote.test"
TOKEN = "a1B2-c3D4_e5F6." * 12  # an opaque token as list software makes them: long
HEADERS = (
    b"List-Unsubscribe: <https://lists.example.test/unsubscribe/" + TOKEN.encode() + b">,\r\n"
    b"\t<mailto:unsubscribe@lists.example.test?subject=unsubscribe%20"
    + TOKEN[:40].encode()
    + b">\r\n"
    b"List-Unsubscribe-Post:  List-Unsubscribe=One-Click\r\n"
    b"List-Id: Example news\r\n <news.lists.example.test>\r\n"
)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    server = Sink(tls_dir=tmp_path_factory.mktemp("tls")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[NodeProcess]:
    root: Path = tmp_path_factory.mktemp("unsubscribe")
    delivery = (
        'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
        f'[delivery.transports]\n"remote.test" = "127.0.0.1:{sink.port}"\n'
    )
    with running_node(root, [ALICE, BOB], delivery=delivery) as node:
        yield node


def test_unsubscribe_headers_arrive_byte_identical_remote_and_local(
    node: NodeProcess, sink: Sink
) -> None:
    assert max(len(line) for line in HEADERS.split(b"\r\n")) > 78, "must need folding"
    body = message(ALICE, [BOB, CAROL], extra=HEADERS)
    code, text = submit(node.ports["submissions"], ALICE, [BOB, CAROL], body)
    assert code == 250, text

    (remote,) = sink.wait_for(lambda: sink.received(CAROL), what="the remote copy")
    assert HEADERS in remote.data
    assert remote.data.endswith(body), "the header and body as submitted follow the trace lines"

    with imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=client_tls()) as imap:
        imap.login(BOB, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, fetched = imap.fetch("1", "(BODY.PEEK[])")
    local = fetched[0][1]
    assert isinstance(local, bytes)
    assert HEADERS in local
    assert local.endswith(body)
    # Each header is there once: nothing was added, split or unfolded on the way.
    for data in (remote.data, local):
        assert len(re.findall(rb"^List-Unsubscribe:", data, re.M)) == 1
        assert len(re.findall(rb"^List-Unsubscribe-Post:", data, re.M)) == 1
