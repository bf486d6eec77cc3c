"""The sans-IO IMAP core: octets from a client → commands; results → octets for the client.

Owns: framing of the client stream with literal limits, large APPEND literals handed to a
sink the server provides rather than held (`framing`), the command grammar
(`parser`, producing the objects of `commands`), the response writer (`response`), modified
UTF-7 mailbox names (`mutf7`), and the ENVELOPE/BODYSTRUCTURE writers.

Serves IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) with the extensions listed in `parser`.
It knows nothing of sessions' mail: the server (`server/imap/`) executes the commands against
the store and decides policy (what is allowed in which state, limits per account).

Must not import asyncio, socket, ssl, sqlite3, time, `mailfort.store` or `mailfort.server`
(tests/unit/test_sans_io.py checks it), and never reads a clock: callers pass moments in.
"""
