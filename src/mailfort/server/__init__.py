"""asyncio listeners: TLS, timeouts, admission control, one module per protocol.

Shared by the listeners: the spool for message data in flight (`spool`), the node's memory
budget for store writes of spooled messages (`memory_budget`), the cap on one account's
logged-in sessions (`account_sessions`).

Thin glue between transports and the protocol cores / aiosmtpd. Must not talk to a store engine
directly: only through the `store.api.Store` interface it is handed.
"""
