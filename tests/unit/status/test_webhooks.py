"""Webhooks: Statuspage-shaped payloads, POSTed to real HTTP servers on loopback; one queue per
subscriber, so a slow or dead one delays and drops nothing of the others."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.server.tls import ensure_self_signed
from mailfort.status import Component, ComponentState, IncidentBook, StateChange
from mailfort.status.repository import Webhook
from mailfort.status.webhook_client import WebhookClient
from mailfort.status.webhook_url import Refused, Resolver, parse
from mailfort.status.webhook_verify import NotVerified, verify
from mailfort.status.webhooks import (
    WebhookSender,
    component_payload,
    incident_payload,
    page_info,
    wants,
)
from tests.webhook_receiver import Receiver

AT = 1_780_000_000.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def hook(url: str, *components: Component) -> Webhook:
    return Webhook(id=f"whk-{abs(hash(url))}", url=url, created_at=AT, components=components)


def change() -> StateChange:
    return StateChange(Component.OUTGOING, ComponentState.OPERATIONAL, ComponentState.DEGRADED, AT)


def test_component_and_incident_payloads_are_shaped_like_statuspage() -> None:
    page = page_info("Example Mail", "https://status.example/", {Component.OUTGOING: change().new})
    assert page["status_indicator"] == "minor"
    body = component_payload(change(), page)
    assert body["component_update"]["new_status"] == "degraded_performance"
    assert body["component_update"]["old_status"] == "operational"
    assert body["component"] == {
        "id": "outgoing",
        "name": "Outgoing mail",
        "status": "degraded_performance",
        "updated_at": "2026-05-28T20:26:40Z",
    }
    book = IncidentBook()
    (incident,) = book.apply([change()])
    (incident,) = book.apply(
        [StateChange(Component.OUTGOING, change().new, ComponentState.OPERATIONAL, AT + 60)]
    )
    data = incident_payload(incident, page)["incident"]
    assert data["status"] == "resolved" and data["resolved_at"] == "2026-05-28T20:27:40Z"
    assert [u["status"] for u in data["incident_updates"]] == ["resolved", "investigating"]
    assert data["components"] == [{"id": "outgoing", "name": "Outgoing mail",
                                   "status": "operational"}]  # fmt: skip
    json.dumps(data)  # JSON-able as it is


def test_subscriptions_filter_by_component() -> None:
    assert wants(hook("http://x/"), [Component.IMAP])
    assert wants(hook("http://x/", Component.IMAP), [Component.POP3, Component.IMAP])
    assert not wants(hook("http://x/", Component.IMAP), [Component.OUTGOING])


async def test_a_post_carries_json_and_a_verifiable_signature(receiver: Receiver) -> None:
    sender = WebhookSender(timeout=2.0, secret=b"s3cret", allow_private=True)
    payload = component_payload(change(), page_info("p", "u", {}))
    assert sender.publish([hook(receiver.url)], payload, [Component.OUTGOING]) == 1
    assert sender.publish([hook(receiver.url, Component.IMAP)], payload, [Component.OUTGOING]) == 0
    await sender.drain(timeout=10)
    ((headers, body),) = receiver.bodies
    assert json.loads(body) == payload
    assert headers["Content-Type"] == "application/json"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Mailfort-Signature"] == f"sha256={expected}"
    assert (sender.sent, sender.failed) == (1, 0)


async def test_failures_are_retried_with_backoff_then_given_up() -> None:
    flaky = Receiver(500, 503, 200)
    dead = Receiver(500)
    try:
        sender = WebhookSender(timeout=2.0, retries=2, backoff=0.05, allow_private=True)
        payload = component_payload(change(), page_info("p", "u", {}))
        sender.publish([hook(flaky.url), hook(dead.url)], payload, [Component.OUTGOING])
        await sender.drain(timeout=10)
        assert len(flaky.bodies) == 3 and len(dead.bodies) == 3
        assert (sender.sent, sender.failed) == (1, 1)
    finally:
        flaky.close()
        dead.close()


async def test_a_stalled_subscriber_is_bounded_by_the_timeout() -> None:
    stalled = Receiver(0, stall=3.0)
    try:
        sender = WebhookSender(timeout=0.3, retries=0, allow_private=True)
        payload = component_payload(change(), page_info("p", "u", {}))
        sender.publish([hook(stalled.url)], payload, [Component.OUTGOING])
        await sender.drain(timeout=2.5)  # well before the server would answer
        assert (sender.sent, sender.failed) == (0, 1)
        await sender.close()
    finally:
        stalled.close()


async def test_only_http_urls_are_posted_to(receiver: Receiver) -> None:
    sender = WebhookSender(timeout=1.0, retries=0, allow_private=True)
    payload = component_payload(change(), page_info("p", "u", {}))
    sender.publish([hook("file:///etc/passwd")], payload, [Component.OUTGOING])
    await sender.drain(timeout=5)
    assert (sender.sent, sender.failed) == (0, 1)


async def test_by_default_no_post_goes_to_a_private_or_loopback_address(
    receiver: Receiver,
) -> None:
    # Subscriptions are public: without [status] webhook_allow_private a stranger's URL must not
    # make the node POST into the provider's own network (here: loopback, by name and by number).
    sender = WebhookSender(timeout=1.0, retries=0)
    payload = component_payload(change(), page_info("p", "u", {}))
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    sender.publish([hook(receiver.url), hook(by_name)], payload, [Component.OUTGOING])
    await sender.drain(timeout=5)
    assert receiver.bodies == []
    assert (sender.sent, sender.failed) == (0, 2)


def payload(n: int = 0) -> dict[str, object]:
    body = component_payload(change(), page_info("p", "u", {}))
    body["n"] = n
    return body


async def wait_until(done: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_slow_subscriber_delays_nothing_of_a_fast_one() -> None:
    with Receiver(0, stall=5.0) as slow, Receiver() as fast:
        sender = WebhookSender(timeout=4.0, retries=1, backoff=0.1, allow_private=True)
        try:
            for n in range(5):
                sender.publish([hook(slow.url), hook(fast.url)], payload(n), [Component.OUTGOING])
            # The slow one holds its first POST for seconds; the fast one has all five long before.
            assert await wait_until(lambda: len(fast.bodies) == 5, 3.0), len(fast.bodies)
            assert [json.loads(b)["n"] for _, b in fast.bodies] == [0, 1, 2, 3, 4], "in order"
            assert len(slow.bodies) == 1
        finally:
            await sender.close()


async def test_a_full_queue_drops_only_its_own_subscribers_oldest() -> None:
    with Receiver(0, stall=3.0) as slow, Receiver() as fast:
        sender = WebhookSender(timeout=2.0, retries=0, queue_size=3, allow_private=True)
        try:
            for n in range(10):
                sender.publish([hook(slow.url), hook(fast.url)], payload(n), [Component.OUTGOING])
                await asyncio.sleep(0.01)
            assert await wait_until(lambda: len(fast.bodies) == 10, 3.0), len(fast.bodies)
            # One POST under way, three waiting: the six in between were dropped, newest kept.
            assert sender.dropped == 6
            await sender.drain(timeout=15)
            assert [json.loads(b)["n"] for _, b in slow.bodies] == [0, 7, 8, 9]
        finally:
            await sender.close()


async def test_hundreds_of_dead_subscribers_do_not_silence_a_live_one() -> None:
    # Once, past 256 deliveries pending the sender dropped the rest: 300 junk subscriptions
    # (listed first, being older) meant the real subscriber heard nothing.
    with Receiver() as live:
        dead = [hook(f"http://127.0.0.1:9/junk{n}") for n in range(300)]
        sender = WebhookSender(timeout=1.0, retries=0, allow_private=True)
        try:
            assert sender.publish([*dead, hook(live.url)], payload(), [Component.OUTGOING]) == 301
            assert await wait_until(lambda: len(live.bodies) == 1, 5.0)
            await sender.drain(timeout=10)
            assert (sender.sent, sender.failed, sender.dropped) == (1, 300, 0)
        finally:
            await sender.close()


async def test_redirects_are_not_followed_nor_retried() -> None:
    with Receiver(302) as moved, Receiver() as elsewhere:
        sender = WebhookSender(timeout=1.0, retries=3, backoff=0.01, allow_private=True)
        sender.publish([hook(moved.url)], payload(), [Component.OUTGOING])
        await sender.drain(timeout=5)
        assert len(moved.bodies) == 1 and elsewhere.bodies == []
        assert (sender.sent, sender.failed) == (0, 1)


# -- the client: one lookup, the checked address, the name in Host and TLS ---------------------
def zone(**names: str) -> tuple[list[str], Resolver]:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return [names[host]] if host in names else []

    return asked, resolver


async def test_the_client_resolves_once_and_connects_to_that_address_by_name(
    receiver: Receiver,
) -> None:
    asked, resolver = zone(**{"hooks.test": "127.0.0.1"})
    client = WebhookClient(timeout=2.0, allow_private=True, resolver=resolver)
    target = parse(f"http://hooks.test:{receiver.port}/hook")
    answer = await client.request(target, "POST", body=b"{}")
    assert answer.status == 204
    assert asked == ["hooks.test"], "one lookup per request, none by a library behind our back"
    ((headers, body),) = receiver.bodies
    assert headers["Host"] == f"hooks.test:{receiver.port}" and body == b"{}"


async def test_the_client_refuses_a_name_that_resolves_to_a_private_address(
    receiver: Receiver,
) -> None:
    _, resolver = zone(**{"hooks.test": "127.0.0.1"})
    client = WebhookClient(timeout=2.0, resolver=resolver)  # the production default: strict
    with pytest.raises(Refused):
        await client.request(parse(f"http://hooks.test:{receiver.port}/hook"), "POST")
    assert receiver.bodies == []


async def test_https_checks_the_certificate_against_the_name_not_the_address(
    tmp_path: Path,
) -> None:
    cert, key = ensure_self_signed(tmp_path, "hooks.test")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    _, resolver = zone(**{"hooks.test": "127.0.0.1", "other.test": "127.0.0.1"})
    client = WebhookClient(timeout=3.0, allow_private=True, resolver=resolver, tls=trusted)
    with Receiver(tls=served) as secure:
        answer = await client.request(parse(f"https://hooks.test:{secure.port}/hook"), "POST")
        assert answer.status == 204
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.request(parse(f"https://other.test:{secure.port}/hook"), "POST")
        assert len(secure.bodies) == 1


# -- verification ----------------------------------------------------------------------------
async def test_a_subscriber_must_echo_the_challenge() -> None:
    client = WebhookClient(timeout=1.0, allow_private=True)
    with Receiver() as willing:
        await verify(client, parse(willing.url + "?team=ops"), topic="https://status.example/")
        (asked,) = willing.challenges
        assert asked["hub.mode"] == "subscribe" and asked["team"] == "ops"
        assert asked["hub.topic"] == "https://status.example/" and len(asked["hub.challenge"]) >= 32
    with Receiver(echo=False) as unwilling:
        with pytest.raises(NotVerified):
            await verify(client, parse(unwilling.url), topic="t")
        assert unwilling.bodies == []
    with pytest.raises(NotVerified):
        await verify(client, parse("http://127.0.0.1:9/closed"), topic="t")


async def test_a_challenge_answered_with_a_redirect_or_an_error_fails() -> None:
    client = WebhookClient(timeout=1.0, allow_private=True)
    for code in (302, 404, 500):
        with Receiver(echo=True) as server:
            server.get_code = code
            with pytest.raises(NotVerified, match=str(code)):
                await verify(client, parse(server.url), topic="t")


async def test_a_silent_subscriber_fails_verification_within_the_timeout() -> None:
    with Receiver(stall_get=True, stall=3.0) as silent:
        client = WebhookClient(timeout=0.5, allow_private=True)
        started = time.monotonic()
        with pytest.raises(NotVerified, match="in time"):
            await verify(client, parse(silent.url), topic="t")
        assert time.monotonic() - started < 2.5
