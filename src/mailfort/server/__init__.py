"""asyncio listeners: TLS, timeouts, admission control, one module per protocol.

Thin glue between transports and the protocol cores / aiosmtpd. Must not talk to a store engine
directly: only through the `store.api.Store` interface it is handed.
"""
