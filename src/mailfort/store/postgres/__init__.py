"""The PostgreSQL engine: many nodes share one database; the same roles as SQLite.

Holds: `PostgresStore`, built from one class per role file (`accounts`, `mailboxes`, `queue`,
`cluster`, `status`, `dkim`, `certs`, `submission`, `tls_reports`) over the plumbing in `engine`
(the pool, failover and change announcements in `connection`, `migrate`).
May import: `asyncpg`, the stdlib, `mailfort.errors`, and the engine-neutral modules of
`mailfort.store` (`api`, `records`, `rows`, `flags`, `migrate`, `notify`); never the SQLite engine,
nor anything above the store.
Promises: every role of `store.roles`, each operation one transaction committed with
`synchronous_commit=on` before its coroutine returns; a write whose commit lost its answer is
confirmed or raised as `CommitInDoubt`, never reported as failed; mailbox changes reach every
node's `ChangeHub`.
"""

from __future__ import annotations

from mailfort.store.postgres.accounts import PostgresAccounts
from mailfort.store.postgres.certs import PostgresCertificates
from mailfort.store.postgres.cluster import PostgresCluster
from mailfort.store.postgres.dkim import PostgresDkim
from mailfort.store.postgres.mailboxes import PostgresMailboxes
from mailfort.store.postgres.queue import PostgresQueue
from mailfort.store.postgres.status import PostgresStatus
from mailfort.store.postgres.submission import PostgresSubmission
from mailfort.store.postgres.tls_reports import PostgresTlsReports

__all__ = ["PostgresStore"]


class PostgresStore(
    PostgresAccounts,
    PostgresMailboxes,
    PostgresQueue,
    PostgresCluster,
    PostgresStatus,
    PostgresDkim,
    PostgresCertificates,
    PostgresSubmission,
    PostgresTlsReports,
):
    """Every role on one PostgreSQL database (one schema)."""
