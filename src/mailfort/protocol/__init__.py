"""Sans-IO protocol cores and protocol constants, one package per protocol (`smtp/`, `imap/`,
`pop3/`).

A core is a plain object: fed bytes, it returns the commands it parsed or a protocol error;
handed a result, it returns the bytes to send. It can be tested, fuzzed and benchmarked without
a socket, and the server module that drives it is thin glue.

May import: the standard library and `mail/` types (the MIME tree ENVELOPE and BODYSTRUCTURE
are written from). Must not import: asyncio, sockets, TLS, threads, `time`, a database driver,
`store/` or `server/`, by any chain of imports (tests/unit/test_layers.py statically,
tests/unit/test_sans_io.py at import time).
"""
