"""Attacks on the status web listener and its webhooks, against a real node while the customer
works from 127.0.9.1: bodies that never come (announced and abandoned, or trickled), oversized
heads, subscription floods, every spelling of loopback as a webhook URL, a forged Host header,
and slow subscribers beside a live one.

Each test checks what the attack itself got (the refusal it should see) and that the node was
not turned against anyone else: the customer served, the overload gate's limit not shrunk (read
from /metrics as `mailfort_concurrency_limit{scope="store"}`), no traceback, no incident."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from mailfort.store.sqlite import SqliteStore
from tests.adversarial.conftest import (
    STATUS,
    assert_no_traceback,
    assert_served,
    assert_unharmed,
    attacker,
    served,
    store_limit,
)
from tests.adversarial.customer import CUSTOMER
from tests.cluster_support import run_async
from tests.nodeproc import NodeProcess
from tests.polling import wait_for
from tests.webhook_receiver import Receiver


def status_settings(lines: str) -> str:
    """Extra settings for the suite's [status] table: the suite's STATUS ends inside it, so lines
    appended without a table header land there (TOML allows a table only once)."""
    assert STATUS.rstrip().rsplit("[", 1)[-1].startswith("status]"), "STATUS must end in [status]"
    return lines


# Subscribers on loopback (non-public: the production check refuses them), and per-client
# attempt limits left at their defaults.
ALLOW_PRIVATE = status_settings("webhook_allow_private = true\n")


async def _raw(
    port: int, source: str, head: bytes, pieces: list[bytes], pause: float, leave: bool
) -> bytes:
    """One client from `source`: the head, then `pieces` `pause` seconds apart (stopping when
    the server has answered); with `leave` it disconnects after that without reading, else it
    returns what the server sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))

    async def read_all() -> bytes:
        data = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                data += chunk
        return data

    answer = asyncio.create_task(read_all())
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(head)
            for piece in pieces:
                await writer.drain()
                await asyncio.sleep(pause)
                if answer.done():
                    break
                writer.write(piece)
            await writer.drain()
        if leave:
            answer.cancel()
            return b""
        return await asyncio.wait_for(answer, 15)
    finally:
        writer.close()


def post_head(path: str, length: int, *fields: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: status.test",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *fields,
    ]
    return ("\r\n".join([*lines, "", ""])).encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_posts_that_announce_a_body_and_leave_do_not_shrink_the_limit(hostile_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: 40 of these cut the limit from 64 to 4 for over 70 s, each with a traceback.
    node = hostile_node
    port = node.ports["http"]
    before = store_limit(node)
    paths = ("/api/v2/webhooks", "/api/account.json", "/incidents/inc-9999")

    async def flood() -> None:
        for _ in range(6):
            await asyncio.gather(
                *(
                    _raw(
                        port,
                        attacker(n),
                        post_head(paths[n % 3], 4000),
                        [b'{"url": "https://'],
                        0.0,
                        leave=True,
                    )
                    for n in range(1, 41)
                )
            )
            await asyncio.sleep(0.5)

    with served(node) as report:
        asyncio.run(flood())
        time.sleep(1.0)
        after = store_limit(node)
    assert after >= before, f"the limit shrank from {before} to {after}"
    assert_unharmed(node, report)


def test_trickled_bodies_hold_no_slot_and_are_cut_off(hostile_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: 66 POSTs trickling their bodies held every gate slot: SMTP 421 and IMAP BYE for all.
    node = hostile_node
    port = node.ports["http"]
    before = store_limit(node)

    async def trickle() -> list[bytes]:
        return await asyncio.gather(
            *(
                _raw(
                    port,
                    attacker(1 + n % 100),
                    post_head(("/api/v2/webhooks", "/api/account.json")[n % 2], 4000),
                    [b"x"] * 40,
                    0.5,
                    leave=False,
                )
                for n in range(100)
            )
        )

    with served(node) as report:
        answers = asyncio.run(trickle())
    assert [status_of(a) for a in answers] == [408] * 100, answers[:3]
    assert store_limit(node) >= before
    assert_unharmed(node, report)


def test_oversized_heads_get_431_and_long_request_lines_414(hostile_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: a 60 KB request header and a 100 KB URL were accepted and served.
    node = hostile_node
    port = node.ports["http"]
    big_header = b"GET / HTTP/1.1\r\nHost: status.test\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
    long_url = b"GET /?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: status.test\r\n\r\n"
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-F%d: %s\r\n" % (n, b"v" * 900) for n in range(40))

    async def attack() -> list[bytes]:
        results: list[bytes] = []
        for round_ in range(5):
            results += await asyncio.gather(
                _raw(port, attacker(1 + round_), big_header, [], 0, leave=False),
                _raw(port, attacker(2 + round_), long_url, [], 0, leave=False),
                # 36 KB of headers in 1-KB reads: refused at 16 KB, whatever the chunking.
                _raw(
                    port,
                    attacker(3 + round_),
                    many[:1024],
                    [many[i : i + 1024] for i in range(1024, len(many), 1024)],
                    0.01,
                    leave=False,
                ),
            )
        return results

    with served(node) as report:
        answers = asyncio.run(attack())
    assert [status_of(a) for a in answers] == [431, 414, 431] * 5, [a[:40] for a in answers]
    assert_unharmed(node, report)


def test_loopback_in_any_spelling_is_refused_as_a_webhook(hostile_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: 2130706433, 0x7f000001, 127.1 and LOCALHOST. passed the subscription check. This node
    # has the production setting (webhook_allow_private = false).
    node = hostile_node
    spellings = [
        "127.0.0.1", "127.0.0.1.", "2130706433", "0x7f000001", "0177.0.0.1", "127.1",
        "127.0.1", "0", "localhost", "LOCALHOST.", "LocalHost", "[::1]", "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]",
    ]  # fmt: skip
    with Receiver() as target, served(node) as report:
        answers = []
        for n, host in enumerate(spellings):
            url = f"http://{host}:{target.port}/hook"
            answers.append(subscribe(node, url, source=attacker(10 + n)))
        time.sleep(2)  # the customer keeps going a little (the attempts above are quick)
        assert target.challenges == [] and target.bodies == [], "nothing may reach loopback"
    assert [code for code, _ in answers] == [400] * len(spellings), answers
    listed = node.cli("status", "webhook", "list")
    assert listed.stdout.strip() == "no webhooks", listed.stdout
    assert_unharmed(node, report)


def test_the_host_header_never_reaches_a_public_page(hostile_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: with public_url unset, links were built from Host, on pages served Cache-Control:
    # public, so a CDN would hand the poisoned links to every visitor.
    node = hostile_node
    port = node.ports["http"]
    poisoned = {}
    for path in ("/", "/history.atom", "/api/v2/summary.json", "/banner.json", "/incidents/x"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body, control = response.read(), response.headers["Cache-Control"]
        except urllib.error.HTTPError as exc:
            body, control = exc.read(), exc.headers["Cache-Control"]
        poisoned[path] = (b"evil.example" in body, control)
    assert not any(found for found, _ in poisoned.values()), poisoned
    assert "public" in poisoned["/"][1]
    assert "event=status_public_url_unset" in node.log(), "a warning at start"


def subscribe(node: NodeProcess, url: str, *, source: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    """POST a subscription from `source`; returns the status and the JSON answer."""
    body = json.dumps({"url": url}).encode()
    answer = asyncio.run(
        _raw(node.ports["http"], source, post_head("/api/v2/webhooks", len(body)), [body], 0, False)
    )
    head, _, rest = answer.partition(b"\r\n\r\n")
    return status_of(head), json.loads(rest or b"{}")


def test_a_subscription_flood_is_throttled_and_capped(fresh_node) -> None:  # type: ignore[no-untyped-def]
    # Seen: anyone could subscribe any number of webhooks; 300 junk ones silenced the real ones.
    node = fresh_node(ALLOW_PRIVATE)
    with Receiver() as junk, Receiver() as real, served(node) as report:
        codes = [
            subscribe(node, f"{junk.url}?n={n}", source=attacker(1 + n % 250))[0]
            for n in range(300)
        ]
        # Attempts: 5 an hour per address, 20 per /24; stored: 10 per /24.
        assert codes.count(201) == 10, codes
        assert set(codes) == {201, 429}, codes
        assert len(junk.challenges) <= 20, "each attempt past the limit cost the node nothing"
        code, hook = subscribe(node, real.url, source=CUSTOMER)
        assert code == 201, hook
        time.sleep(2)  # the customer keeps going a little (the attempts above are quick)
    listed = node.cli("status", "webhook", "list").stdout.strip().splitlines()
    assert len(listed) == 11
    assert_unharmed(node, report)


def test_slow_subscribers_delay_nothing_of_a_live_one(fresh_node) -> None:  # type: ignore[no-untyped-def]
    # Each subscriber has its own queue: ten that hold every POST for 20 s (the attacker's
    # share of subscriptions) do not delay the live one's notification.
    node = fresh_node(ALLOW_PRIVATE)
    slow = [Receiver(0, stall=20.0) for _ in range(10)]
    try:
        with Receiver() as live:
            for n, receiver in enumerate(slow):
                assert subscribe(node, receiver.url, source=attacker(1 + n // 5))[0] == 201
            assert subscribe(node, live.url, source=CUSTOMER)[0] == 201
            with served(node) as report:
                ghost_node_dies(node)
                wait_for(
                    lambda: any(b"component_update" in body for _, body in live.bodies),
                    timeout=30,
                    what="the live subscriber's component_update",
                )
            # The slow ones got the same notification and still hold their first try.
            assert all(len(r.bodies) <= 1 for r in slow), [len(r.bodies) for r in slow]
            assert_served(report)
            assert_no_traceback(node)
    finally:
        for receiver in slow:
            receiver.close()


def ghost_node_dies(node: NodeProcess) -> None:
    """A second cluster member that heartbeats once and then falls silent: live nodes drop to
    half within three heartbeats, a real component change that fires the webhooks."""

    async def register(store: SqliteStore) -> None:
        await store.register_node("ghost", [], time.time())

    with_store(node, register)


def with_store(node: NodeProcess, fn: Callable[[SqliteStore], object]) -> None:
    async def run() -> None:
        store = SqliteStore(node.db_path)
        await store.open()
        try:
            await fn(store)  # type: ignore[misc]
        finally:
            await store.close()

    run_async(run)
