"""Webhooks: a Statuspage-shaped JSON POST to each subscriber when a component or incident changes.

Payloads follow Statuspage's webhook format (``component_update`` + ``component``, or
``incident`` with ``incident_updates``) so that tools which read Statuspage read ours.

Delivery never holds up the status loop: each POST runs on a small thread pool of its own (stdlib
``urllib``; a slow subscriber cannot starve the node's other threads), bounded by
``timeout`` per try, retried a few times with exponential backoff and jitter, and given up with a
log line. Only ``http``/``https`` URLs are posted to and redirects are not followed, so a
subscription cannot steer the node to other schemes or hosts. At most ``max_pending`` deliveries
wait at once; past that new ones are dropped (and logged) rather than queued without bound.
With a ``secret``, each POST carries ``X-Mailfort-Signature: sha256=<HMAC of the body>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from mailfort import __version__
from mailfort.status.components import Component, ComponentState, StateChange
from mailfort.status.incidents import Impact, Incident
from mailfort.status.repository import Webhook

log = logging.getLogger("mailfort.status.webhooks")

Post = Callable[[str, bytes, Mapping[str, str], float], Awaitable[int]]


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class WebhookSender:
    def __init__(
        self,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 1.0,
        secret: bytes | None = None,
        max_pending: int = 256,
        post: Post | None = None,
        allow_private: bool = False,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.secret = secret
        self.max_pending = max_pending
        self._post = post or self._urllib_post
        # Anyone may subscribe over the public API, so a URL whose host resolves to loopback or
        # a private network would let strangers make the node POST into the provider's own
        # network. Only an operator who wants that ([status] webhook_allow_private) gets it.
        self.allow_private = allow_private
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def publish(
        self, hooks: Sequence[Webhook], payload: Mapping[str, Any], components: Iterable[Component]
    ) -> int:
        """Start POSTing `payload` to each hook that wants `components`; returns how many."""
        wanted = tuple(components)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        started = 0
        for hook in hooks:
            if not wants(hook, wanted):
                continue
            if len(self._pending) >= self.max_pending:
                log.warning("event=webhook_dropped reason=too_many_pending url=%s", hook.url)
                continue
            task = asyncio.create_task(self._deliver(hook.url, body), name="webhook")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            started += 1
        return started

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the deliveries under way (tests, orderly stop)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": f"mailfort/{__version__}"}
        if self.secret is not None:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-Mailfort-Signature"] = f"sha256={digest}"
        return headers

    async def _deliver(self, url: str, body: bytes) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            log.warning("event=webhook_refused reason=scheme url=%s", url)
            self.failed += 1
            return
        headers = self._headers(body)
        for attempt in range(self.retries + 1):
            try:
                status = await asyncio.wait_for(
                    self._post(url, body, headers, self.timeout), self.timeout + 1.0
                )
            except Refused as exc:
                self.failed += 1
                log.warning("event=webhook_refused url=%s reason=%s", url, exc)
                return
            except (OSError, TimeoutError, ValueError) as exc:
                outcome = repr(exc)
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                outcome = f"http {status}"
            if attempt == self.retries:
                break
            delay = self.backoff * 2**attempt
            log.info("event=webhook_retry url=%s attempt=%d error=%s", url, attempt + 1, outcome)
            await asyncio.sleep(random.uniform(delay / 2, delay))
        self.failed += 1
        log.warning("event=webhook_failed url=%s tries=%d error=%s", url, self.retries + 1, outcome)

    async def _urllib_post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> int:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, _post_blocking, url, body, headers, timeout, self.allow_private
        )


class Refused(ValueError):
    """Not sent, on purpose: trying again would not change that."""


def refuse_private(url: str) -> None:
    """`Refused` when the URL's host is or resolves to a non-public address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise Refused(f"{host!r} is a non-public address ({address})")


def _post_blocking(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float, allow_private: bool = False
) -> int:
    if not allow_private:
        refuse_private(url)
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
