"""Delivery: getting a queued message to where it goes.

Owns: routing a remote recipient's domain to a next hop (`transport.py`: overrides like Postfix's
transport_maps and relayhost; otherwise `mx.py`: MX by preference, A/AAAA fallback, null MX), and
the SMTP client that hands a message to that next hop (`remote.py`: STARTTLS, several recipients per
transaction, per-recipient results, a small per-destination connection cache and concurrency limit);
the TLS a destination requires (`tls_policy.py`, from MTA-STS in `mtasts.py` and DANE in
`dane.py`) and the TLS report counts and report format (`tlsrpt.py`).

It answers "what happened to each recipient" (`remote.RecipientResult`: delivered, deferred or
failed, with the enhanced status and the remote reply) and decides nothing about the queue: retry
schedules, lifetimes and bounces belong to `queue/`, and nothing here writes to the store (TLS
report counts are kept in memory; `queue/tls_reports.py` stores and sends them).

May import: `mail/`, `protocol/smtp` (replies and extensions, shared with the server), the
store's role interfaces (types), the leaves, dnspython, aiosmtplib. Must not import: `server/`,
`queue/`, a store engine (tests/unit/test_layers.py).
"""
