"""The sans-IO POP3 core: octets from a client → commands; results → octets for the client.

Owns: the command grammar (`commands`, `parser` with its bounded `LineReader`), the reply texts
and response codes (`replies`), the response writer with CRLF normalization and dot-stuffing
(`response`), the per-session view of a maildrop (`maildrop`: message numbers, sizes, UIDL,
deletion marks) and the session state machine (`session`: AUTHORIZATION → TRANSACTION →
UPDATE, one transition table).

Serves RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034) and the response
codes of RFC 2449 and RFC 3206. The core answers every command it can from the snapshot it was
given; what needs the outside world (checking a password, reading a message, applying deletions,
a TLS handshake) comes out as an event, and the server (`server/pop3.py`) hands the result back.

Must not import asyncio, socket, ssl, sqlite3, time, `mailfort.store` or `mailfort.server`
(tests/unit/test_sans_io.py and tests/unit/test_layers.py check it), and never reads a clock:
the server owns every timeout.
"""
