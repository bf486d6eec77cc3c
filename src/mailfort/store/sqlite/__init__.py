"""The embedded SQLite engine: one file, WAL, one group-committing writer, pooled readers.

Holds: `SqliteStore`, built from one class per role file (`accounts`, `mailboxes`, `queue`,
`cluster`, `status`, `dkim`, `certs`, `submission`, `tls_reports`) over the plumbing in `engine`
(readers, `writer`, `migrate`).
May import: the stdlib (`sqlite3`), `mailfort.errors`, and the engine-neutral modules of
`mailfort.store` (`api`, `records`, `rows`, `flags`, `migrate`, `notify`); never the PostgreSQL
engine, nor anything above the store.
Promises: every role of `store.roles`, with each write durable (committed with `synchronous=FULL`
in WAL mode) before its coroutine returns; one node per file (one writer).
"""

from __future__ import annotations

from mailfort.store.sqlite.accounts import SqliteAccounts
from mailfort.store.sqlite.certs import SqliteCertificates
from mailfort.store.sqlite.cluster import SqliteCluster
from mailfort.store.sqlite.dkim import SqliteDkim
from mailfort.store.sqlite.mailboxes import SqliteMailboxes
from mailfort.store.sqlite.queue import SqliteQueue
from mailfort.store.sqlite.status import SqliteStatus
from mailfort.store.sqlite.submission import SqliteSubmission
from mailfort.store.sqlite.tls_reports import SqliteTlsReports

__all__ = ["SqliteStore"]


class SqliteStore(
    SqliteAccounts,
    SqliteMailboxes,
    SqliteQueue,
    SqliteCluster,
    SqliteStatus,
    SqliteDkim,
    SqliteCertificates,
    SqliteSubmission,
    SqliteTlsReports,
):
    """Every role on one SQLite file."""
