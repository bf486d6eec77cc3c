"""The http guard driven in memory (ASGI messages in, messages out) with the node's real
`OverloadGate`, fuzzed with hypothesis: whatever a client sends — a body in any pieces, too
much of it, or a disconnect at any point — the app sees the whole body or nothing, the answer is
the right one, and the gate ends with no slot held and its limit where it was."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from mailfort.config import OverloadConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.overload import OverloadGate
from mailfort.status.web.guard import Guard

MAX_BODY = 4096


def run(chunks: list[bytes], leave_at: int | None, chunked: bool, path: str) -> dict[str, Any]:
    gate = OverloadGate(OverloadConfig(), NodeMetrics())
    limit = gate.limit.limit
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    total = sum(len(c) for c in chunks)
    headers = (
        [(b"transfer-encoding", b"chunked")]
        if chunked
        else [(b"content-length", str(total).encode())]
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("192.0.2.1", 1234),
    }
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    if leave_at is not None:
        messages = [*messages[: leave_at % (len(messages) + 1)], {"type": "http.disconnect"}]

    async def receive() -> Message:
        await asyncio.sleep(0)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = Guard(app, gate=lambda: gate, max_body=MAX_BODY, body_timeout=5.0, min_rate=0)
    asyncio.run(guard(scope, receive, send))
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    return {
        "seen": seen,
        "statuses": statuses,
        "in_flight": gate.limit.in_flight,
        "limit_kept": gate.limit.limit == limit,
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=1500), max_size=8),
    st.one_of(st.none(), st.integers(min_value=0, max_value=20)),
    st.booleans(),
    st.sampled_from(["/api/account.json", "/api/v2/webhooks", "/", "/metrics"]),
)
def test_a_body_in_any_pieces_is_seen_whole_or_not_at_all(
    chunks: list[bytes], leave_at: int | None, chunked: bool, path: str
) -> None:
    result = run(chunks, leave_at, chunked, path)
    body = b"".join(chunks)
    assert result["in_flight"] == 0 and result["limit_kept"]
    pieces = max(len(chunks), 1)
    left_early = leave_at is not None and leave_at % (pieces + 1) < pieces
    if not chunked and len(body) > MAX_BODY:
        assert result["statuses"] == [413] and result["seen"] == []  # refused by its length
    elif not chunked and not body:
        assert result["seen"] == [b""] and result["statuses"] == [200]  # nothing to wait for
    elif left_early:
        # Gone before its body was in (perhaps after passing the bound): no app, and no answer
        # but a 413.
        assert result["seen"] == [] and result["statuses"] in ([], [413])
    elif len(body) > MAX_BODY:
        assert result["statuses"] == [413] and result["seen"] == []
    else:
        assert result["seen"] == [body] and result["statuses"] == [200]
