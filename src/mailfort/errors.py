"""Errors that cross module boundaries.

    MailfortError
    ├── ConfigError            invalid configuration (the operator's fault); names the key
    └── StoreError             a store operation failed; never a raw driver exception
        ├── StoreUnavailable   temporary: database gone, busy, disk full — answer 4xx, retry later
        │   └── Busy           a node-local capacity bound was reached (e.g. password checks)
        ├── SchemaTooNew       the store was migrated by a newer mailfort than this one
        ├── AlreadyExists      unique key taken (domain, account, alias, mailbox)
        ├── NotFound           the named object does not exist
        └── OverQuota          the account's quota would be exceeded

Protocol errors live with their protocol (`protocol/smtp/replies.py`) and carry their wire answer.
"""

from __future__ import annotations


class MailfortError(Exception):
    """Base of every mailfort error."""


class ConfigError(MailfortError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class StoreError(MailfortError):
    pass


class StoreUnavailable(StoreError):
    pass


class CommitInDoubt(StoreUnavailable):
    """The connection broke while the database was committing, and it could not be asked
    afterwards whether the commit happened: the write may or may not be there."""


class SchemaTooNew(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


class OverQuota(StoreError):
    pass


class Busy(StoreUnavailable):
    """A bound on concurrent work was reached; the same answer as an unavailable store: later."""
