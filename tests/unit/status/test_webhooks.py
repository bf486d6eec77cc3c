"""Webhooks: Statuspage-shaped payloads, POSTed to a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mailfort.status import Component, ComponentState, IncidentBook, StateChange
from mailfort.status.repository import Webhook
from mailfort.status.webhooks import (
    WebhookSender,
    component_payload,
    incident_payload,
    page_info,
    wants,
)

AT = 1_780_000_000.0


class Receiver:
    """A loopback HTTP server that answers from a script of status codes (the last one sticks);
    a code of 0 means: hold the request without answering for `stall` seconds."""

    def __init__(self, *codes: int, stall: float = 3.0) -> None:
        self.codes = list(codes) or [204]
        self.stall = stall
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                if code == 0:
                    time.sleep(receiver.stall)
                    return
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def hook(url: str, *components: Component) -> Webhook:
    return Webhook(id="wh-1", url=url, created_at=AT, components=components)


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
