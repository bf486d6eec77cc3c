"""The sans-IO IMAP core: octets from a client → commands; results → octets for the client.

Holds: framing of the client stream with literal limits, large APPEND literals handed to a
sink the server provides rather than held (`framing`); the command grammar (`parser`,
producing the objects of `commands`); every answer the server gives by name — response codes,
tagged NO/BAD/OK answers and untagged status lines such as BYE (`answers`); the writer of
strings, data responses (STATUS, LIST, FLAGS, ESEARCH, FETCH ...), dates and sets
(`response`); modified UTF-7 mailbox names (`mutf7`); the ENVELOPE and BODYSTRUCTURE writers;
SEARCH keys evaluated against a message's MIME tree (`search`) and FETCH body sections and
BINARY decoding (`sections`).

Serves IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) with the extensions listed in `parser`.
It knows nothing of sessions' mail: the server (`server/imap/`) executes the commands against
the store and decides policy (what is allowed in which state, limits per account).

May import: the standard library and `mailfort.mail` types. Must not import asyncio, socket,
ssl, sqlite3, time, `mailfort.store` or `mailfort.server` (tests/unit/test_sans_io.py checks
it), and never reads a clock: callers pass moments in.

Promises: every function is pure (bytes and values in, bytes and values out); nothing it writes
can end a response line early (texts are stripped of controls, values that cannot be atoms or
quoted strings become literals); a malformed command raises only `parser.ProtocolError`.
"""
