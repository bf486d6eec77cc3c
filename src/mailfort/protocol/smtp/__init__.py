"""The sans-IO SMTP core: octets from a client → events; the server's decisions → octets.

Owns, for the server (`server/smtp.py`) and the client (`delivery/remote.py`) alike:
- `session`: the server session state machine — command lines (RFC 5321 4.1, with their
  length limits and per-command call budgets), HELO/EHLO, MAIL/RCPT with their parameters,
  DATA, BDAT (RFC 3030 CHUNKING), RSET/NOOP/QUIT/VRFY/EXPN/HELP, STARTTLS (RFC 3207), AUTH
  PLAIN/LOGIN (RFC 4954, RFC 4616), pipelining (RFC 2920: replies to commands that arrived
  together leave together);
  what needs the outside world (a policy decision, the store, a TLS handshake) comes out as
  an event, and the server hands the result back;
- `data`: the DATA receiver (the end marker, dot-stuffing, line and size limits, the spool);
- `chunks`: the BDAT receiver (counted chunks, raw, with DATA's limits and spool);
- `extensions`: the one table the EHLO answer is built from, and the client's reader of one;
- `paths`: MAIL/RCPT paths and ESMTP parameters (RFC 5321 4.1.2, RFC 1870, RFC 6152, RFC 6531);
- `envelope`: the typed envelope and recipients of a transaction;
- `replies`: every reply text with its enhanced status code (RFC 3463), and the client's
  reading of a server's enhanced code.

May import the standard library and `mailfort.mail` types. Must not import asyncio, socket,
ssl, sqlite3, time, `mailfort.store` or `mailfort.server` (tests/unit/test_sans_io.py checks
it), and never reads a clock: the server owns every timeout.
"""
