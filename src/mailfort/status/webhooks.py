"""Webhooks: a Statuspage-shaped JSON POST to each subscriber when a component or incident changes.

Payloads follow Statuspage's webhook format (``component_update`` + ``component``, or
``incident`` with ``incident_updates``) so that tools which read Statuspage read ours.

Delivery never holds up the status loop, and no subscriber holds up another: each subscriber has
a queue of its own (at most ``queue_size`` payloads; when it is full its oldest payload is
dropped, since a newer state says more) and one task that POSTs them in order, each bounded by
``timeout`` per try, retried a few times with exponential backoff and jitter, and given up with a
log line. A slow or dead subscriber only fills its own queue. Requests go through
`WebhookClient`: the host is resolved once per try, every address must be public (unless the
operator allows private ones), the connection goes to one of those addresses, and redirects are
never followed. With a ``secret``, each POST carries ``X-Mailfort-Signature: sha256=<HMAC of the
body>``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from mailfort.status.components import Component, ComponentState, StateChange
from mailfort.status.incidents import Impact, Incident
from mailfort.status.repository import Webhook
from mailfort.status.webhook_client import WebhookClient
from mailfort.status.webhook_url import BadUrl, Refused, parse

log = logging.getLogger("mailfort.status.webhooks")

# (url, body, headers) -> HTTP status; raises Refused, OSError or TimeoutError.
Post = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]

QUEUE_SIZE: Final = 32  # payloads waiting per subscriber
# Answers worth another try (RFC 9110 §15.6 server errors, 408 and 429); any other, a redirect
# included, would be the same next time.
_RETRIED: Final = frozenset({408, 429, 500, 502, 503, 504})


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def page_info(name: str, url: str, states: Mapping[Component, ComponentState]) -> dict[str, Any]:
    worst = max(states.values(), key=lambda s: s.severity, default=ComponentState.OPERATIONAL)
    impact = Impact.of(worst)
    description = {
        Impact.NONE: "All Systems Operational",
        Impact.MINOR: "Minor Service Outage",
        Impact.MAJOR: "Partial System Outage",
        Impact.CRITICAL: "Major System Outage",
    }[impact]
    return {"id": name, "url": url, "status_indicator": impact.value,
            "status_description": description}  # fmt: skip


def component_payload(change: StateChange, page: Mapping[str, Any]) -> dict[str, Any]:
    """Statuspage's ``component_update`` event."""
    at = iso(change.at)
    return {
        "meta": {"generated_at": at},
        "page": dict(page),
        "component_update": {
            "created_at": at,
            "new_status": change.new.value,
            "old_status": change.old.value,
            "id": f"{change.component.value}-{int(change.at)}",
            "component_id": change.component.value,
        },
        "component": {
            "id": change.component.value,
            "name": change.component.display_name,
            "status": change.new.value,
            "updated_at": at,
        },
    }


def incident_payload(incident: Incident, page: Mapping[str, Any]) -> dict[str, Any]:
    """Statuspage's incident event: the incident with its updates, newest first."""
    updates = []
    for n, entry in reversed(list(enumerate(incident.timeline))):
        body = entry.text
        if entry.change is not None:
            body = (
                f"{entry.change.component.display_name}: {entry.change.new.value.replace('_', ' ')}"
            )
        updates.append(
            {
                "id": f"{incident.id}-{n}",
                "status": entry.status.value,
                "body": body,
                "created_at": iso(entry.at),
                "author": entry.author.value,
            }
        )
    return {
        "meta": {"generated_at": iso(incident.updated_at)},
        "page": dict(page),
        "incident": {
            "id": incident.id,
            "name": incident.title,
            "status": incident.status.value,
            "impact": incident.impact.value,
            "created_at": iso(incident.opened_at),
            "updated_at": iso(incident.updated_at),
            "resolved_at": iso(incident.resolved_at),
            "shortlink": page.get("url"),
            "incident_updates": updates,
            "components": [
                {"id": c.value, "name": c.display_name, "status": s.value}
                for c, s in incident.components.items()
            ],
        },
    }


def wants(hook: Webhook, components: Iterable[Component]) -> bool:
    """Whether `hook` subscribed to any of `components` (an empty subscription wants all)."""
    return not hook.components or any(c in hook.components for c in components)


@dataclass(slots=True)
class _Subscriber:
    """One subscriber's own queue and the task working through it."""

    url: str
    waiting: collections.deque[bytes] = field(default_factory=collections.deque)
    task: asyncio.Task[None] | None = None


class WebhookSender:
    def __init__(
        self,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 1.0,
        secret: bytes | None = None,
        queue_size: int = QUEUE_SIZE,
        allow_private: bool = False,
        client: WebhookClient | None = None,
        post: Post | None = None,
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self.secret = secret
        self.queue_size = queue_size
        self.client = client or WebhookClient(timeout=timeout, allow_private=allow_private)
        self._post = post or self._client_post
        self._subscribers: dict[str, _Subscriber] = {}  # by URL (one subscription per URL)
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def publish(
        self, hooks: Sequence[Webhook], payload: Mapping[str, Any], components: Iterable[Component]
    ) -> int:
        """Queue `payload` for each hook that wants `components`; returns how many."""
        wanted = tuple(components)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        queued = 0
        for hook in hooks:
            if not wants(hook, wanted):
                continue
            subscriber = self._subscribers.get(hook.url)
            if subscriber is None:
                subscriber = self._subscribers[hook.url] = _Subscriber(hook.url)
            if len(subscriber.waiting) >= self.queue_size:
                subscriber.waiting.popleft()
                self.dropped += 1
                log.warning(
                    "event=webhook_dropped reason=queue_full id=%s url=%s", hook.id, hook.url
                )
            subscriber.waiting.append(body)
            if subscriber.task is None:
                subscriber.task = asyncio.create_task(
                    self._work(subscriber), name=f"webhook-{hook.id}"
                )
            queued += 1
        return queued

    @property
    def waiting(self) -> int:
        """Payloads queued for all subscribers, not yet being sent."""
        return sum(len(s.waiting) for s in self._subscribers.values())

    def _tasks(self) -> set[asyncio.Task[None]]:
        return {s.task for s in self._subscribers.values() if s.task is not None}

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the deliveries queued and under way (tests, orderly stop)."""
        tasks = self._tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self) -> None:
        tasks = self._tasks()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribers.clear()

    async def _work(self, subscriber: _Subscriber) -> None:
        try:
            while subscriber.waiting:
                await self._deliver(subscriber.url, subscriber.waiting.popleft())
        finally:
            subscriber.task = None
            if not subscriber.waiting and self._subscribers.get(subscriber.url) is subscriber:
                del self._subscribers[subscriber.url]

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-Mailfort-Signature"] = f"sha256={digest}"
        return headers

    async def _deliver(self, url: str, body: bytes) -> None:
        headers = self._headers(body)
        outcome = ""
        for attempt in range(self.retries + 1):
            try:
                status = await self._post(url, body, headers)
            except (Refused, BadUrl) as exc:
                self.failed += 1
                log.warning("event=webhook_refused url=%s reason=%s", url, exc)
                return
            except (OSError, TimeoutError) as exc:
                outcome = repr(exc)
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                outcome = f"http {status}"
                if status not in _RETRIED:
                    break  # a redirect or a refusal: the same request would get the same answer
            if attempt == self.retries:
                break
            delay = self.backoff * 2**attempt
            log.info("event=webhook_retry url=%s attempt=%d error=%s", url, attempt + 1, outcome)
            await asyncio.sleep(random.uniform(delay / 2, delay))
        self.failed += 1
        log.warning("event=webhook_failed url=%s tries=%d error=%s", url, self.retries + 1, outcome)

    async def _client_post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        answer = await self.client.request(parse(url), "POST", body=body, headers=headers)
        return answer.status
