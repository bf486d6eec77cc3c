"""asyncio listeners: TLS, timeouts, the node's admission gate, one module or package per protocol.

Holds: the accept loop that admits or refuses each connection before asyncio builds anything
(`listener`, `admission`), the node's overload gate (`overload`), TLS contexts (`tls`); for every
listener the spool for message data in flight (`spool`), the node's memory budget for large
messages (`memory_budget`), the cap on one account's sessions (`account_sessions`), keeping the
loop free during long computations (`offload`) and the edges of a stream connection (`streams`);
and per protocol SMTP (`smtp`, `smtp_policy`), IMAP (`imap/`) and POP3 (`pop3`, `pop3_maildrop`).

May import: the protocol cores, `mail/`, the store's role interfaces, `auth/`, `overload/`,
`config`, `status/` (the components a session reports on, the notices it shows) and the leaves
(`metrics`, `errors`, `network`). Must not import: a store engine, `queue/`, `delivery/`,
`cluster/`, `status/web/` or `node.py`: the node hands each server what it uses
(`tests/unit/test_layers.py`).

Promises: thin glue between a transport and a core. Every per-connection bound (line, literal,
message, idle and total time, pending output) is enforced here before data is buffered past it,
and past a bound the answer is the protocol's own error or temporary refusal.
"""
