"""The store interface every engine implements.

Every mailbox operation takes the account first, so that a later deployment can route accounts to
different databases (sharding by account or domain). Engines translate their driver errors into
`mailfort.errors.StoreError` subclasses; nothing driver-specific crosses this boundary.
"""

from __future__ import annotations

import abc
import enum
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mailfort.store.notify import ChangeHub

DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    id: int
    address: str
    password_hash: str
    quota_bytes: int
    used_bytes: int
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Alias:
    source: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    id: int
    account_id: int
    name: str
    special_use: str | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDelivery:
    """One copy of an accepted message for a local account's INBOX."""

    account_id: int
    recipient: str
    # Per-recipient trace lines (Return-Path, Delivered-To), stored beside the shared body.
    prefix: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedRecipient:
    recipient: str
    original: str
    account_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptRequest:
    """Everything one SMTP transaction commits in a single store transaction."""

    queue_id: str
    sender: str
    # A bytearray when read back from the node's spool: converting it to bytes would copy a
    # message of up to max_message_size once more. Both drivers bind either as a BLOB/bytea.
    body: bytes | bytearray
    received: float
    client: str
    authenticated: str | None
    local: Sequence[LocalDelivery] = field(default_factory=tuple)
    queued: Sequence[QueuedRecipient] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptResult:
    queue_id: str
    delivered: int
    queued: int
    mailboxes: tuple[int, ...] = ()  # mailbox ids that received a copy (for change notification)


# -- IMAP -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRow:
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxChanges:
    """What changed in a mailbox after a MODSEQ: the basis of untagged updates and CONDSTORE."""

    mailbox: Mailbox
    changed: list[MessageRow]  # new or with changed flags, in UID order
    expunged: list[int]  # UIDs, ascending


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxStatus:
    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendItem:
    data: bytes | bytearray  # a bytearray when read back from the spool (see AcceptRequest)
    flags: frozenset[str] = frozenset()
    internal_date: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    mailbox_id: int
    uidvalidity: int
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyResult:
    mailbox_id: int
    uidvalidity: int
    pairs: list[tuple[int, int]]  # (source UID, new UID), source order


class FlagMode(enum.Enum):
    REPLACE = "replace"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueItem:
    id: int
    queue_id: str
    sender: str
    recipient: str
    original: str
    account_id: int | None
    size: int
    received: float
    attempts: int
    next_attempt: float
    last_error: str | None
    lease_owner: str | None
    lease_until: float | None
    # What remote delivery recorded about the last failed attempt (for DSNs and `queue show`).
    warned: bool = False  # a delay warning was sent for this recipient
    last_attempt: float | None = None
    last_status: str | None = None  # enhanced status code of the last failure, "4.2.0"
    remote_mta: str | None = None  # host that gave the last answer
    diagnostic: str | None = None  # RFC 3464 Diagnostic-Code value, "smtp; 450 4.2.0 busy"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFailure:
    """Why one delivery attempt to one recipient did not succeed."""

    error: str  # one line for people: `queue list`, logs ("host mx[192.0.2.1] said: 450 ...")
    status: str  # enhanced status code (RFC 3463)
    at: float
    remote_mta: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferral:
    item: QueueItem
    next_attempt: float
    failure: AttemptFailure
    warned: bool = False  # this settlement carries the item's delay warning


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """The outcome of one delivery attempt, committed in one transaction.

    Delivered and failed items are removed; deferred ones get their next attempt; `notices` (DSNs:
    bounces, delay warnings) are accepted as new messages in that same transaction, so a crash can
    neither lose a bounce nor send it twice."""

    delivered: Sequence[QueueItem] = ()
    deferred: Sequence[Deferral] = ()
    failed: Sequence[QueueItem] = ()
    notices: Sequence[AcceptRequest] = ()


# -- cluster -------------------------------------------------------------------------------------
NODE_STATES = ("active", "draining", "gone")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A node as the store knows it. `state` is what was written (active, draining, gone);
    whether an active node is in fact dead is for the reader to judge from `heartbeat`."""

    name: str
    state: str
    started: float
    heartbeat: float
    listeners: list[dict[str, object]]
    load: dict[str, object]


def encode_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode_json_list(text: str) -> list[dict[str, object]]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def decode_json_dict(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- status ----------------------------------------------------------------------------------------
# Plain rows: the store keeps status records without knowing the status types (`store/` must not
# import `status/`); `status.repository` converts. States travel as their string value, with
# `rank` (0 = operational) where SQL must order them.
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentRow:
    component: str
    state: str
    since: float | None
    findings: str  # JSON
    updated_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRow:
    """One component's UTC day; as an argument of `add_status_history`, seconds to add."""

    component: str
    day: str  # YYYY-MM-DD
    worst: str
    rank: int
    degraded_seconds: float = 0.0
    outage_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    """An incident or maintenance window: searchable columns and the whole record as JSON.

    Incidents use `opened_at`, `updated_at`, `resolved_at`, `origin`; maintenance windows
    `starts_at`, `ends_at`, `cancelled_at`. `version` counts writes (optimistic concurrency)."""

    id: str
    data: str  # JSON
    version: int = 0
    origin: str = ""
    opened_at: float = 0.0
    updated_at: float = 0.0
    resolved_at: float | None = None
    starts_at: float = 0.0
    ends_at: float = 0.0
    cancelled_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRow:
    id: str
    url: str
    components: str  # JSON list of component keys; [] = all
    created_at: float
    # The client network that subscribed over the public API ("192.0.2.0/24"); "" for the
    # operator's own (CLI), which no per-network cap counts.
    network: str = ""


class WebhookOutcome(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"  # the URL was subscribed already: `row` is that subscription, unchanged
    FULL = "full"  # `max_total` subscriptions exist
    NETWORK_FULL = "network_full"  # `max_per_network` subscriptions from the row's network exist


@dataclass(frozen=True, slots=True)
class WebhookAdded:
    outcome: WebhookOutcome
    row: WebhookRow | None  # None when full


@dataclass(frozen=True, slots=True, kw_only=True)
class DelayedMail:
    """A message held too long: settled late (`settled_at` set) or still queued (None)."""

    account: str
    queue_id: str
    accepted_at: float
    settled_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountQueue:
    queued_from: int  # messages (envelopes) the account sent still in the queue
    queued_for: int  # queue items for the account
    oldest_queued_at: float | None  # accepted-at of the oldest of those
    last_inbox_delivery: float | None  # internal date of the newest INBOX message


# How many of an account's networks `login_networks` returns: a roaming phone meets many, and the
# throttle needs the recent ones only.
MAX_LOGIN_NETWORKS = 256


class Store(abc.ABC):
    """Async store. Every write is durable when its coroutine returns.

    `hub` wakes sessions waiting on a mailbox after a commit changed it (IDLE)."""

    hub: ChangeHub
    # Overload gate hook: called on the event loop with the seconds each durable commit
    # took (one group-commit batch on SQLite, one write transaction on PostgreSQL).
    commit_observer: Callable[[float], None] | None = None
    # Mail settled later than this many seconds after acceptance is recorded as delayed
    # (`delayed_mail`); the node sets it from [status] notice_delay.
    delay_threshold: float = 900.0

    @property
    def pending_commits(self) -> int:
        """Writes submitted and not yet committed (0 where the engine cannot tell)."""
        return 0

    def _commit_done(self, seconds: float) -> None:
        observer = self.commit_observer
        if observer is not None:
            observer(seconds)

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # -- domains -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_domain(self, name: str) -> None: ...

    @abc.abstractmethod
    async def list_domains(self) -> list[str]: ...

    @abc.abstractmethod
    async def delete_domain(self, name: str) -> None: ...

    # -- accounts ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_account(self, address: str, password_hash: str, quota_bytes: int = 0) -> Account:
        """Create the account with its default mailboxes (`DEFAULT_MAILBOXES`)."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None: ...

    @abc.abstractmethod
    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    @abc.abstractmethod
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    @abc.abstractmethod
    async def set_password(self, address: str, password_hash: str) -> None: ...

    @abc.abstractmethod
    async def delete_account(self, address: str) -> None: ...

    @abc.abstractmethod
    async def count_accounts(self) -> int: ...

    # -- aliases -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_alias(self, source: str, target: str) -> None: ...

    @abc.abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    @abc.abstractmethod
    async def delete_alias(self, source: str, target: str | None = None) -> None: ...

    @abc.abstractmethod
    async def alias_targets(self, source: str) -> list[str]: ...

    # -- mailboxes ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]: ...

    @abc.abstractmethod
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None: ...

    @abc.abstractmethod
    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox: ...

    # -- messages ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def accept(self, request: AcceptRequest) -> AcceptResult:
        """Commit a whole SMTP transaction: body, local copies, queue items. Durable on return.

        Raises OverQuota, and stores nothing, when a local copy would take its account past a
        non-zero quota (checked inside the transaction, so concurrent acceptances cannot both
        fill the same room)."""

    @abc.abstractmethod
    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]: ...

    @abc.abstractmethod
    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None: ...

    # -- IMAP --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        """Every message of the mailbox in UID order (a SELECT snapshot)."""

    @abc.abstractmethod
    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        """Messages with MODSEQ > since, UIDs expunged after since; None if the mailbox is gone."""

    @abc.abstractmethod
    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None: ...

    @abc.abstractmethod
    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        """Append all items in one transaction (MULTIAPPEND is all or nothing, RFC 3502).

        Raises NotFound when the mailbox does not exist, OverQuota past the account quota."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        """Remove messages flagged \\Deleted (only among `uids` when given); returns their UIDs."""

    @abc.abstractmethod
    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        """Remove exactly these messages, whatever their flags, in one transaction (POP3 QUIT).

        Like `expunge`: the UIDs are recorded as expunged with a new MODSEQ, the quota and
        orphaned bodies are freed. UIDs no longer there are skipped; returns the removed UIDs,
        ascending. Raises NotFound when the mailbox does not exist."""

    @abc.abstractmethod
    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        """Copy (or move: copy and expunge in the same transaction) to `target`.

        Raises NotFound when the target does not exist, OverQuota past the quota (copy only)."""

    @abc.abstractmethod
    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        """The stored bytes of each message (trace prefix + body)."""

    @abc.abstractmethod
    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        """Rename a mailbox and its children; INBOX moves its messages, stays (RFC 9051 6.3.6)."""

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def subscriptions(self, account_id: int) -> set[str]: ...

    @abc.abstractmethod
    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None: ...

    # -- queue -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def queue_items(self, queue_id: str | None = None) -> list[QueueItem]: ...

    @abc.abstractmethod
    async def queue_body(self, queue_id: str) -> bytes | None: ...

    @abc.abstractmethod
    async def claim_queue(
        self, owner: str, now: float, lease_seconds: float, limit: int, local_only: bool
    ) -> list[QueueItem]:
        """Lease due items whose lease is free or expired; never one a live lease holds."""

    @abc.abstractmethod
    async def deliver_queued(self, item: QueueItem, owner: str, prefix: bytes) -> bool:
        """Deliver a leased local item into its INBOX and delete it, in one transaction.

        Returns False (and changes nothing) when the lease is no longer ours, so that a takeover
        can never deliver twice."""

    @abc.abstractmethod
    async def defer_queued(
        self, item: QueueItem, owner: str, next_attempt: float, error: str
    ) -> bool: ...

    @abc.abstractmethod
    async def claim_remote(
        self, owner: str, now: float, lease_seconds: float, limit: int
    ) -> list[QueueItem]:
        """Like `claim_queue`, for items without an account only (remote recipients)."""

    @abc.abstractmethod
    async def renew_lease(self, item_ids: Sequence[int], owner: str, until: float) -> int:
        """Extend our leases on these items; returns how many are still ours."""

    @abc.abstractmethod
    async def settle_queued(self, settlement: Settlement, owner: str) -> bool:
        """Commit a delivery attempt's outcome in one transaction.

        All or nothing: returns False (and changes nothing) when any of its items is no longer
        leased by `owner` (taken over after the lease expired, or deleted)."""

    async def complete_queued(self, item: QueueItem, owner: str) -> bool:
        """The item was delivered elsewhere: remove it, if it is still ours."""
        return await self.settle_queued(Settlement(delivered=(item,)), owner)

    @abc.abstractmethod
    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        """Make items due now; all items when queue_id is None. Returns how many."""

    @abc.abstractmethod
    async def delete_queue(self, queue_id: str) -> int: ...

    # -- cluster -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def register_node(
        self, name: str, listeners: Sequence[Mapping[str, object]], now: float
    ) -> None:
        """Insert or reset the node's row: active, started and heartbeat `now`, empty load."""

    @abc.abstractmethod
    async def heartbeat(self, name: str, load: Mapping[str, object], now: float) -> str | None:
        """Record that the node lives and its load; returns its state (None: no such node).

        The state is how a node learns that an operator told it to drain."""

    @abc.abstractmethod
    async def set_node_state(self, name: str, state: str) -> bool:
        """Set active/draining/gone; False when there is no such node. ValueError on a bad state."""

    async def clock(self) -> float:
        """The store's own time (seconds since the epoch), which every node reckons leases, locks
        and heartbeats by (`cluster.clock.StoreClock`), so that ownership never depends on the
        nodes' clocks agreeing. An embedded store has one machine's clock: that one."""
        return time.time()

    @abc.abstractmethod
    async def list_nodes(self) -> list[NodeInfo]:
        """Every registered node, by name."""

    @abc.abstractmethod
    async def lease_counts(self, now: float) -> dict[str, int]:
        """Queue items leased per owner (leases still running at `now`)."""

    @abc.abstractmethod
    async def release_leases(self, owner: str) -> int:
        """Give back every queue lease `owner` holds (they are due at once for anyone)."""

    # -- networks an account logged in from (auth/known.py) ---------------------------------
    @abc.abstractmethod
    async def login_networks(self, account_id: int, since: float) -> dict[str, float]:
        """The networks `account_id` logged in from with its password at or after `since`, each
        with the last time it was recorded; the newest `MAX_LOGIN_NETWORKS` of them."""

    @abc.abstractmethod
    async def remember_login_network(
        self, account_id: int, network: str, now: float, forget_before: float
    ) -> None:
        """Record that `account_id` logged in from `network` at `now`, and forget its networks
        not recorded since `forget_before`, in one transaction. Changing the password forgets
        them all (`set_password`): a network that knew the old one is nobody's to trust."""

    # -- POP3 maildrop locks across nodes ----------------------------------------------------
    @abc.abstractmethod
    async def acquire_maildrop(self, account_id: int, owner: str, until: float, now: float) -> bool:
        """Take the account's maildrop lock until `until` if it is free, expired or ours."""

    @abc.abstractmethod
    async def renew_maildrop(self, account_id: int, owner: str, until: float) -> bool:
        """Extend our lock; False when it is no longer ours (expired and taken)."""

    @abc.abstractmethod
    async def release_maildrop(self, account_id: int, owner: str) -> None:
        """Drop the lock if `owner` holds it."""

    # -- status records ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def status_components(self) -> list[ComponentRow]: ...

    @abc.abstractmethod
    async def save_status_components(self, rows: Sequence[ComponentRow]) -> None:
        """Insert or replace these components' rows, in one transaction."""

    @abc.abstractmethod
    async def status_history(self, first_day: str) -> list[HistoryRow]:
        """Every row from `first_day` (YYYY-MM-DD) on, by component and day."""

    @abc.abstractmethod
    async def add_status_history(self, rows: Sequence[HistoryRow], keep_from: str) -> None:
        """Add each row's seconds to its (component, day), keeping the worst state (highest
        rank); drop rows of days before `keep_from`. One transaction."""

    @abc.abstractmethod
    async def put_status_incident(self, row: RecordRow, expect: int | None = None) -> int | None:
        """Insert or replace an incident; returns its new version. With `expect`, only if the
        stored version is still `expect` (0: not stored yet), else None and nothing changes."""

    @abc.abstractmethod
    async def status_incident(self, incident_id: str) -> RecordRow | None: ...

    @abc.abstractmethod
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

    @abc.abstractmethod
    async def put_status_maintenance(self, row: RecordRow, expect: int | None = None) -> int | None:
        """Like `put_status_incident`, for maintenance windows."""

    @abc.abstractmethod
    async def status_maintenance_window(self, maintenance_id: str) -> RecordRow | None: ...

    @abc.abstractmethod
    async def status_maintenance(self, ends_after: float | None) -> list[RecordRow]:
        """Soonest start first; with `ends_after`, only windows not cancelled that end later."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    async def remove_status_webhook(self, webhook_id: str) -> bool: ...

    @abc.abstractmethod
    async def status_webhooks(self) -> list[WebhookRow]:
        """Oldest first."""

    @abc.abstractmethod
    async def new_id(self, prefix: str) -> str:
        """ "PREFIX-N" with N from a counter per prefix that never hands a number out twice."""

    # -- named leases (the status leader) ----------------------------------------------------
    @abc.abstractmethod
    async def acquire_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        """Take or extend the lease `name` until `until` if it is free, expired or ours."""

    @abc.abstractmethod
    async def release_lease(self, name: str, owner: str) -> None:
        """Drop the lease if `owner` holds it."""

    @abc.abstractmethod
    async def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds the lease at `now` (None: free or expired)."""

    # -- delayed mail, queue health, per-account status, notices -----------------------------
    @abc.abstractmethod
    async def delayed_mail(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedMail]:
        """Mail settled within [since, until] that was recorded as delayed (it waited longer than
        `delay_threshold` then) by more than `threshold`, plus items still queued that were
        accepted more than `threshold` before `now` (settled_at None).
        Each is attributed to a local account: the recipient of a local item, the sender
        (authenticated login, else envelope sender) of an outbound one; others are left out."""

    @abc.abstractmethod
    async def queue_health(self, now: float) -> tuple[int, float | None]:
        """(items due at `now` that were never tried and nobody holds a live lease on, the
        oldest `created` among them) from one index: the mail the platform owes. Retries wait
        for destinations that failed and leased items for a remote server: neither is ours."""

    @abc.abstractmethod
    async def account_queue(self, account_id: int, address: str) -> AccountQueue: ...

    @abc.abstractmethod
    async def deliver_status_notice(
        self, key: str, account_id: int, message: bytes, now: float
    ) -> bool:
        """Deliver `message` into the account's INBOX like any delivery (UID, MODSEQ, quota use,
        change notification) and mark (key, account) in the same transaction; False (and no
        change) when it was marked already. NotFound when the account has no INBOX."""
