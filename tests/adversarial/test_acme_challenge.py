"""Attacks on the ACME HTTP-01 path (`/.well-known/acme-challenge/<token>`), which answers anyone.

A token that cannot be one a CA sends (too short, too long, not base64url, path tricks) is a 404
without a store read; one that could be is one primary-key read, so a flood of made-up tokens costs
the store no scan; a request line of 64 KB is refused by the listener's head limit, and the node
keeps answering.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mailfort.store.sqlite import SqliteStore
from mailfort.wellknown import acme_http
from tests.nodeproc import NodeProcess

PATH = "/.well-known/acme-challenge/"
ODD = [
    "",
    "short",
    "a" * 129,
    "a" * 5000,
    "..%2F..%2Fetc%2Fpasswd",
    "%00" + "a" * 40,
    "a" * 40 + "%20",
    "\u00e9" * 30,
    "a" * 40 + "=",
    "a" * 40 + ".b",
    "*" * 43,
    "%25" * 20,
]


class CountingStore(SqliteStore):
    """The real SQLite store, counting the challenge reads the route makes."""

    reads = 0

    async def acme_challenge(self, token: str, now: float) -> str | None:
        self.reads += 1
        return await super().acme_challenge(token, now)


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[TestClient, CountingStore]]:
    store = CountingStore(tmp_path / "store.sqlite3")
    with TestClient(Starlette(routes=acme_http.routes(store, time.time))) as client:
        client.portal.call(store.open)  # type: ignore[union-attr]
        client.portal.call(  # type: ignore[union-attr]
            store.put_acme_challenge, "k" * 43, "k" * 43 + ".thumb", time.time() + 60, time.time()
        )
        yield client, store
        client.portal.call(store.close)  # type: ignore[union-attr]


def test_a_token_no_ca_sends_is_not_looked_up(counted: tuple[TestClient, CountingStore]) -> None:
    client, store = counted
    for token in ODD:
        answer = client.get(PATH + token)
        assert answer.status_code == 404, (token, answer.status_code)
    assert store.reads == 0
    # A known token is answered; a well-formed unknown one costs one read and gets a 404.
    assert client.get(PATH + "k" * 43).content == b"k" * 43 + b".thumb"
    assert client.get(PATH + secrets.token_urlsafe(32)).status_code == 404
    assert store.reads == 2
    # Other methods are not answered by the route.
    assert client.post(PATH + "k" * 43).status_code == 405


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    running = NodeProcess(tmp_path / "node", http=True)
    running.provision()
    running.start()
    yield running
    running.stop()
    assert "Traceback" not in running.log(), running.log()[-3000:]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


# Serial (tests/conftest.py): a flood whose store reads take slots of the adaptive gate, which
# a loaded machine shrinks; the test allows only 10 % of 503s.
@pytest.mark.serial
def test_huge_and_many_made_up_tokens_against_a_node(node: NodeProcess) -> None:
    port = node.ports["http"]
    base = f"http://127.0.0.1:{port}{PATH}"
    # A 64-KB request line: refused by the head limit, not read into a store query.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET " + PATH.encode() + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status = raw.recv(64)
    assert status.split()[1] in (b"414", b"431", b"400"), status

    # 1000 made-up tokens from 20 clients at once: each a 404, quickly, one keyed read each.
    async def flood() -> list[int]:
        async def one() -> int:
            return await asyncio.to_thread(_status, base + secrets.token_urlsafe(32))

        codes: list[int] = []
        for _ in range(50):
            codes += await asyncio.gather(*(one() for _ in range(20)))
        return codes

    started = time.monotonic()
    codes = asyncio.run(flood())
    assert set(codes) <= {404, 503}, set(codes)  # 503: the http listener's own admission
    assert codes.count(404) >= 900
    assert time.monotonic() - started < 60
    assert _status(f"http://127.0.0.1:{port}/") == 200
