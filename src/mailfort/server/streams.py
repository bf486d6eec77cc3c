"""What every stream-based listener (IMAP, POP3) does at the edges of a connection."""

from __future__ import annotations

import asyncio


def peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "unknown"


async def close(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close after a session: flush what is buffered, but never wait long for a client that
    does not read (`abort` drops the buffer at once: the peer is gone or stuck)."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (Exception, asyncio.CancelledError):
        # A client that never reads keeps the close waiting to flush: drop its buffer. Cancelled:
        # the node is exiting; this is the handler's last step and nobody awaits it.
        writer.transport.abort()
