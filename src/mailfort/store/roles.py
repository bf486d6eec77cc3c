"""The store's roles: one narrow protocol per concern; each consumer depends only on those it uses.

Every mailbox operation takes the account first, so that a later deployment can route accounts to
different databases (sharding by account or domain). Every write is durable when its coroutine
returns. Engines translate their driver errors into `mailfort.errors.StoreError` subclasses;
nothing driver-specific crosses a role.

| role            | what it holds                                         | who uses it         |
| --------------- | ----------------------------------------------------- | ------------------- |
| `Accounts`      | account, domain and alias lookups                     | mail, auth, server  |
| `AccountAdmin`  | adding, changing, deleting domains, accounts, aliases | cli                 |
| `LoginNetworks` | the networks an account logged in from                | auth                |
| `Mailboxes`     | mailboxes and their messages, change notification     | server (IMAP, POP3) |
| `Acceptance`    | committing an SMTP transaction                        | server (SMTP)       |
| `Queue`         | leasing, delivering and settling queue items          | queue, cli          |
| `Cluster`       | node registry, the store's clock, leases per node     | cluster, status     |
| `Locks`         | POP3 maildrop locks and named leases across nodes     | cluster, status     |
| `StatusRecords` | status components, history, incidents, webhooks       | status              |
| `MailHealth`    | delayed mail and queue health, per account            | status              |
| `CommitLoad`    | how busy durable commits are                          | server (overload)   |
| `DkimKeys`      | DKIM keys per domain and where they are in rotation   | queue, cli, ops     |
| `Secrets`       | secrets generated once and shared by every node       | trust (SRS)         |
| `Certificates`  | TLS certificates, ACME challenges and account keys    | certs, wellknown    |
| `SubmissionCounts` | what each user submitted per hour, on every node   | server (submission) |
| `TlsReports`    | TLS session counts per policy domain, reports sent    | queue (tls_reports) |

`store.api.Store` is all of them together, for the code that opens and wires a store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from mailfort.store.notify import ChangeHub
from mailfort.store.records import (
    AcceptRequest,
    AcceptResult,
    Account,
    AccountQueue,
    Alias,
    AppendItem,
    AppendResult,
    ComponentRow,
    CopyResult,
    DelayedMail,
    DkimKey,
    FlagMode,
    HistoryRow,
    Mailbox,
    MailboxChanges,
    MailboxStatus,
    MessageRow,
    NodeInfo,
    QueueItem,
    RecordRow,
    Settlement,
    StoredCertificate,
    StoredMessage,
    TlsResultRow,
    WebhookAdded,
    WebhookRow,
)


class Accounts(Protocol):
    """Who exists: accounts, the domains they live in, and aliases. Read only."""

    async def get_account(self, address: str) -> Account | None: ...

    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    async def count_accounts(self) -> int: ...

    async def list_domains(self) -> list[str]: ...

    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    async def alias_targets(self, source: str) -> list[str]: ...


class AccountAdmin(Protocol):
    """What an operator changes: domains, accounts and aliases."""

    async def add_domain(self, name: str) -> None: ...

    async def delete_domain(self, name: str) -> None: ...

    async def add_account(self, address: str, password_hash: str, quota_bytes: int = 0) -> Account:
        """Create the account with its default mailboxes (`records.DEFAULT_MAILBOXES`)."""
        ...

    async def set_password(self, address: str, password_hash: str) -> None:
        """Change the password and forget the account's login networks (`LoginNetworks`)."""
        ...

    async def delete_account(self, address: str) -> None:
        """Delete the account, its mailboxes and the mail still queued for it."""
        ...

    async def add_alias(self, source: str, target: str) -> None: ...

    async def delete_alias(self, source: str, target: str | None = None) -> None: ...


class LoginNetworks(Protocol):
    """The networks an account logged in from with its password (`auth/known.py`)."""

    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        """The networks `account_id` logged in from with its password at or after `since`, each
        with the last time it was recorded; the newest `records.MAX_LOGIN_NETWORKS` of them."""
        ...

    async def remember_login_network(
        self, account_id: int, network: str, now: float, forget_before: float
    ) -> None:
        """Record that `account_id` logged in from `network` at `now`, and forget its networks
        not recorded since `forget_before`, in one transaction. Changing the password forgets
        them all (`set_password`): a network that knew the old one is nobody's to trust."""
        ...


class Mailboxes(Protocol):
    """Mailboxes and their messages, as IMAP and POP3 see them.

    `hub` wakes sessions waiting on a mailbox after a commit changed it (IDLE)."""

    hub: ChangeHub

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None: ...

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox: ...

    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        """Rename a mailbox and its children; INBOX moves its messages, stays (RFC 9051 6.3.6)."""
        ...

    async def delete_mailbox(self, account_id: int, name: str) -> None: ...

    async def subscriptions(self, account_id: int) -> set[str]: ...

    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None: ...

    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        """Every message of the mailbox in UID order (a SELECT snapshot)."""
        ...

    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        """Messages with MODSEQ > since, UIDs expunged after since; None if the mailbox is gone."""
        ...

    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None: ...

    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]: ...

    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None: ...

    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        """The stored bytes of each message (trace prefix + body)."""
        ...

    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        """Append all items in one transaction (MULTIAPPEND is all or nothing, RFC 3502).

        Raises NotFound when the mailbox does not exist, OverQuota past the account quota."""
        ...

    async def set_flags(
        self,
        account_id: int,
        mailbox_id: int,
        uids: list[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRow], list[int]]:
        """(rows whose flags changed, with their new MODSEQ; UIDs refused by UNCHANGEDSINCE)."""
        ...

    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        """Remove messages flagged \\Deleted (only among `uids` when given); returns their UIDs."""
        ...

    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        """Remove exactly these messages, whatever their flags, in one transaction (POP3 QUIT).

        Like `expunge`: the UIDs are recorded as expunged with a new MODSEQ, the quota and
        orphaned bodies are freed. UIDs no longer there are skipped; returns the removed UIDs,
        ascending. Raises NotFound when the mailbox does not exist."""
        ...

    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        """Copy (or move: copy and expunge in the same transaction) to `target`.

        Raises NotFound when the target does not exist, OverQuota past the quota (copy only)."""
        ...


class Acceptance(Protocol):
    """Committing what one SMTP transaction accepted."""

    async def accept(self, request: AcceptRequest) -> AcceptResult:
        """Commit a whole SMTP transaction: body, local copies, queue items. Durable on return.

        Raises OverQuota, and stores nothing, when a local copy would take its account past a
        non-zero quota (checked inside the transaction, so concurrent acceptances cannot both
        fill the same room)."""
        ...


class Queue(Protocol):
    """Queue items: leased by one worker at a time, delivered or settled in one transaction."""

    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]: ...

    async def queue_body(self, queue_id: str) -> bytes | None: ...

    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        """Lease due items whose lease is free or expired; never one a live lease holds."""
        ...

    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        """Like `claim_queue`, for items without an account only (remote recipients)."""
        ...

    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        """Extend our leases on these items; returns how many are still ours."""
        ...

    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        """Deliver a leased local item into its INBOX and delete it, in one transaction.

        Returns False (and changes nothing) when the lease is no longer ours, so that a takeover
        can never deliver twice."""
        ...

    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool: ...

    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        """Commit a delivery attempt's outcome in one transaction.

        All or nothing: returns False (and changes nothing) when any of its items is no longer
        leased by `owner` (taken over after the lease expired, or deleted)."""
        ...

    async def complete_queued(self, item: QueueItem, owner: str) -> bool:
        """The item was delivered elsewhere: remove it, if it is still ours."""
        return await self.settle_queued(Settlement(delivered=(item,)), owner)

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        """Make items due now; all items when queue_id is None. Returns how many."""
        ...

    async def delete_queue(self, queue_id: str) -> int: ...


class Cluster(Protocol):
    """The nodes sharing this store, and the clock they reckon by."""

    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        """Insert or reset the node's row: active, started and heartbeat `now`, empty load."""
        ...

    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        """Record that the node lives and its load; returns its state (None: no such node).

        The state is how a node learns that an operator told it to drain."""
        ...

    async def set_node_state(self, name: str, state: str) -> bool:
        """Set active/draining/gone; False when there is no such node. ValueError on a bad state."""
        ...

    async def list_nodes(self) -> list[NodeInfo]:
        """Every registered node, by name."""
        ...

    async def clock(self) -> float:
        """The store's own time (seconds since the epoch), which every node reckons leases, locks
        and heartbeats by (`cluster.clock.StoreClock`), so that ownership never depends on the
        nodes' clocks agreeing."""
        ...

    async def lease_counts(self, now: float) -> dict[str, int]:
        """Queue items leased per owner (leases still running at `now`)."""
        ...

    async def release_leases(self, owner: str) -> int:
        """Give back every queue lease `owner` holds (they are due at once for anyone)."""
        ...


class Locks(Protocol):
    """Locks held across nodes until a time: POP3 maildrops and named leases (the status leader)."""

    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        """Take the account's maildrop lock until `until` if it is free, expired or ours."""
        ...

    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        """Extend our lock; False when it is no longer ours (expired and taken)."""
        ...

    async def release_maildrop(self, account_id: int, owner: str) -> None:
        """Drop the lock if `owner` holds it."""
        ...

    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        """Take or extend the lease `name` until `until` if it is free, expired or ours."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """Drop the lease if `owner` holds it."""
        ...

    async def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds the lease at `now` (None: free or expired)."""
        ...


class StatusRecords(Protocol):
    """The status page's records, and the notices it delivers into INBOXes once each."""

    async def status_components(self) -> list[ComponentRow]: ...

    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        """Insert or replace these components' rows, in one transaction."""
        ...

    async def status_history(self, first_day: str) -> list[HistoryRow]:
        """Every row from `first_day` (YYYY-MM-DD) on, by component and day."""
        ...

    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        """Add each row's seconds to its (component, day), keeping the worst state (highest
        rank); drop rows of days before `keep_from`. One transaction."""
        ...

    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        """Insert or replace an incident; returns its new version. With `expect`, only if the
        stored version is still `expect` (0: not stored yet), else None and nothing changes."""
        ...

    async def status_incident(self, incident_id: str) -> RecordRow | None: ...

    async def status_incidents(
        self,
        *,
        open_only: bool = False,
        since: float | None = None,
        resolved_since: float | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        """Newest update first. `since`: updated at or after; `resolved_since`: resolved at or
        after (implies resolved)."""
        ...

    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        """Like `put_status_incident`, for maintenance windows."""
        ...

    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None: ...

    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        """Soonest start first; with `ends_after`, only windows not cancelled that end later."""
        ...

    async def add_status_webhook(
        self,
        row: WebhookRow,
        *,
        max_total: int | None = None,
        max_per_network: int | None = None,
    ) -> WebhookAdded:
        """Store `row`, unless its URL is subscribed already (EXISTS, with that subscription) or
        a cap is reached: `max_total` subscriptions in all, or `max_per_network` with the row's
        network (a row without one is counted only in the total). The check and the insert are
        one transaction, so concurrent subscriptions on several nodes cannot pass a cap."""
        ...

    async def remove_status_webhook(self, webhook_id: str) -> bool: ...

    async def status_webhooks(self) -> list[WebhookRow]:
        """Oldest first."""
        ...

    async def new_id(self, prefix: str) -> str:
        """ "PREFIX-N" with N from a counter per prefix that never hands a number out twice."""
        ...

    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        """Deliver `message` into the account's INBOX like any delivery (UID, MODSEQ, quota use,
        change notification) and mark (key, account) in the same transaction; False (and no
        change) when it was marked already. NotFound when the account has no INBOX."""
        ...


class MailHealth(Protocol):
    """How mail is flowing: mail held too long, mail the platform owes, per account.

    Mail settled later than `delay_threshold` seconds after acceptance is recorded as delayed
    (`delayed_mail`); the node sets it from [status] notice_delay."""

    delay_threshold: float

    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        """Mail settled within [since, until] that was recorded as delayed (it waited longer than
        `delay_threshold` then) by more than `threshold`, plus items still queued that were
        accepted more than `threshold` before `now` (settled_at None).
        Each is attributed to a local account: the recipient of a local item, the sender
        (authenticated login, else envelope sender) of an outbound one; others are left out."""
        ...

    async def queue_health(self, now: float) -> tuple[int, float | None]:
        """(items due at `now` that were never tried and nobody holds a live lease on, the
        oldest `created` among them) from one index: the mail the platform owes. Retries wait
        for destinations that failed and leased items for a remote server: neither is ours."""
        ...

    async def account_queue(self, account_id: int, address: str) -> AccountQueue: ...


class CommitLoad(Protocol):
    """How busy durable commits are: what the overload gate watches."""

    # Called on the event loop with the seconds each durable commit took (one group-commit
    # batch on SQLite, one write transaction on PostgreSQL).
    commit_observer: Callable[[float], None] | None

    @property
    def pending_commits(self) -> int:
        """Writes submitted and not yet committed (0 where the engine cannot tell)."""
        ...


class DkimKeys(Protocol):
    """Each domain's DKIM signing keys (`records.DkimKey`), one per selector, and their state:
    published, then active (signing), then retiring (still in DNS), then retired."""

    async def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        """Every key of `domain` (all domains when None), whatever its state, by domain, then
        creation time, then selector."""
        ...

    async def add_dkim_keys(self, keys: Sequence[DkimKey]) -> None:
        """Store new keys, all or none, in one transaction. AlreadyExists when one of their
        (domain, selector) pairs is taken: a selector names one key forever, since a verifier
        may have cached the old record under it."""
        ...

    async def activate_dkim_keys(
        self, domain: str, selectors: Sequence[str], now: float, retire_after: float
    ) -> list[DkimKey]:
        """Make these keys of `domain` active (`activated_at` = `now`) and every other active
        key of the domain retiring until `retire_after`, in one transaction, so that the domain
        never signs with both generations nor with none. Returns the keys that began retiring.
        NotFound (and no change) when a selector names no published or active key."""
        ...

    async def retire_dkim_keys(self, domain: str, selectors: Sequence[str], now: float) -> int:
        """Mark these retiring keys retired (`retired_at` = `now`); returns how many changed."""
        ...

    async def delete_dkim_key(self, domain: str, selector: str) -> bool:
        """Forget a key (an operator's clean-up); False when there was none."""
        ...


class Secrets(Protocol):
    """Secrets every node must agree on, generated once (the SRS hash key)."""

    async def shared_secret(self, name: str, candidate: bytes) -> bytes:
        """The secret stored under `name`; the first caller's `candidate` becomes it. Every node
        passes a fresh random candidate and uses what comes back."""


class SubmissionCounts(Protocol):
    """Messages and recipients each authenticated user submitted per hour (`hour` = store time
    // 3600), shared by every node (`server/submission_limit.py`)."""

    async def submission_counts(
        self, account: str, hours: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        """(messages, recipients) `account` submitted in each of `hours` that has any."""
        ...

    async def take_submission(
        self,
        account: str,
        hour: int,
        messages: int,
        recipients: int,
        *,
        max_messages: int,
        max_recipients: int,
    ) -> bool:
        """Count `messages` and `recipients` in `hour` if the hour's totals stay within the
        maxima (0: no bound), atomically: concurrent takers on every node cannot together pass
        them. False, with nothing counted, otherwise. The account's hours before `hour - 1`
        are forgotten in the same transaction."""
        ...

    async def return_submission(
        self, account: str, hour: int, messages: int, recipients: int
    ) -> None:
        """Take back what `take_submission` counted, for a message that was not stored."""
        ...


class Certificates(Protocol):
    """TLS certificates every node serves, and what an ACME client (RFC 8555) shares across
    nodes: pending HTTP-01 answers, so any node answers the CA, and the account key."""

    async def certificate(self, name: str) -> StoredCertificate | None:
        """The stored certificate `name` (None: none yet)."""
        ...

    async def put_certificate(self, cert: StoredCertificate) -> None:
        """Store (or replace) the certificate `cert.name`."""
        ...

    async def put_acme_challenge(
        self, token: str, key_authorization: str, expires: float, now: float
    ) -> None:
        """Answer HTTP-01 `token` with `key_authorization` until `expires`; drops the tokens
        expired at `now` (of orders whose node died)."""
        ...

    async def acme_challenge(self, token: str, now: float) -> str | None:
        """The key authorization for `token` while it has not expired at `now`."""
        ...

    async def delete_acme_challenge(self, token: str) -> None:
        """Withdraw `token` (its validation is over)."""
        ...

    async def acme_account_key(self, directory: str, key_pem: str, now: float) -> str:
        """The account key for the CA at `directory`: the stored one, else `key_pem`, stored
        now. Two nodes asking at once get the same key."""
        ...


# -- what one consumer uses together (Python has no intersection types) -----------------------
class TlsReports(Protocol):
    """TLS-RPT (RFC 8460): session counts per policy domain and day, and which reports went out."""

    async def add_tls_results(self, results: Sequence[TlsResultRow]) -> None:
        """Add `results`' session counts to what the store holds for the same day, domain, policy,
        host, address and result (one transaction)."""
        ...

    async def tls_report_domains(self, before_day: str, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (day, domain) pairs with counts from days before `before_day` whose
        report is not claimed yet, oldest first."""
        ...

    async def tls_results(self, day: str, domain: str) -> list[TlsResultRow]:
        """The counts of `domain` on `day`."""
        ...

    async def claim_tls_report(
        self, day: str, domain: str, node: str, now: float, *, report: bool, since: float, cap: int
    ) -> bool:
        """Claim the report of (`day`, `domain`) for `node` (the sender its cap counts for): True
        once in the whole cluster. A claim with `report` (a mail goes out) fails while `node` has
        claimed `cap` reports since `since`; one without (the domain asks for none) always
        counts as done."""
        ...

    async def prune_tls_results(self, before_day: str) -> int:
        """Forget counts and claims of days before `before_day`; how many rows went."""
        ...


class MailboxAccess(Accounts, Mailboxes, Protocol):
    """Mailboxes with their owners' accounts (quota): what a mail session reads and writes."""


class Intake(Accounts, Acceptance, Protocol):
    """Recipient lookups and acceptance: what an SMTP session needs."""


class LocalQueue(Accounts, Queue, Protocol):
    """The queue with account lookups: a local item whose account is gone is bounced."""


class StatusStore(Accounts, StatusRecords, MailHealth, Protocol):
    """Everything the status repository reads and writes."""


class ClusterHealth(Cluster, MailHealth, Protocol):
    """What the status collector samples: the nodes and the mail the platform owes."""


class StatusLeader(StatusStore, ClusterHealth, Locks, Protocol):
    """The status service: its records and signals, evaluated by whoever holds the named lease."""
