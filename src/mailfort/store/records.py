"""The records the store hands out and takes in: plain frozen dataclasses, no behaviour.

Every role (`store.roles`) speaks in these; both engines build them from rows with the mappers in
`store.rows`. Nothing here knows a driver or an engine.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

INBOX = "INBOX"
JUNK = "Junk"
JUNK_USE = "\\Junk"

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
class LocalDelivery:
    """One copy of an accepted message for a local account's INBOX (or its Junk mailbox)."""

    account_id: int
    recipient: str
    # Per-recipient trace lines (Return-Path, Delivered-To), stored beside the shared body.
    prefix: bytes
    # INBOX, or JUNK: the account's mailbox with the \Junk special use (RFC 6154), made with
    # that name when it has none (DMARC quarantine of incoming mail).
    mailbox: str = INBOX


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


# `list_messages` rows: the same columns as IMAP reads.
StoredMessage = MessageRow


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
    # The login that submitted the message (None: it came in at the MX, or is ours): outgoing
    # mail is DKIM-signed as its From: domain only when a user of ours submitted it.
    authenticated: str | None = None


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


# -- DKIM keys -------------------------------------------------------------------------------------
class DkimState(enum.StrEnum):
    """Where a key is in its life (RFC 6376 3.6.1 and its advice on key rotation, M3AAWG's
    "DKIM Key Rotation Best Common Practices")."""

    PUBLISHED = "published"  # in DNS (or about to be), not signing yet: resolvers may not see it
    ACTIVE = "active"  # signing
    RETIRING = "retiring"  # not signing; kept in DNS so mail signed with it still verifies
    RETIRED = "retired"  # may be removed from DNS


DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimKey:
    """One signing key of a domain under one selector (`<selector>._domainkey.<domain>`).

    `private_key` is what dkimpy signs with: PEM (PKCS#1 or PKCS#8) for RSA, the base64 of the
    32-byte seed for Ed25519 (RFC 8463 3). `public_key` is the DNS record's `p=` value: base64 of
    the DER SubjectPublicKeyInfo for RSA, of the 32 raw bytes for Ed25519."""

    domain: str
    selector: str
    algorithm: str  # one of DKIM_ALGORITHMS
    private_key: str
    public_key: str
    state: DkimState
    created: float
    activated_at: float | None = None
    retire_after: float | None = None  # when a retiring key may leave DNS
    retired_at: float | None = None

    @property
    def key_type(self) -> str:
        """The record's `k=` tag: "rsa" or "ed25519"."""
        return self.algorithm.partition("-")[0]

    @property
    def txt_record(self) -> str:
        """The TXT value to publish at `<selector>._domainkey.<domain>` (RFC 6376 3.6.1)."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCertificate:
    """A certificate every node serves: its chain and key (PEM), the names it covers, when it
    expires and when it was stored (epoch seconds)."""

    name: str  # which certificate: "acme" for the one the node's ACME client keeps
    chain_pem: str
    key_pem: str
    names: tuple[str, ...]
    not_after: float
    updated: float


# -- TLS reports (RFC 8460) -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TlsResultRow:
    """TLS sessions to one policy domain on one UTC day with one outcome (role `TlsReports`)."""

    day: str  # YYYY-MM-DD, UTC
    domain: str  # the policy domain
    policy_type: str  # sts | tlsa | no-policy-found
    policy: str  # the policy's lines, joined by "\n"
    mx_host: str
    result: str  # "" for successful sessions, else an RFC 8460 4.3 result type
    address: str  # the receiving MX's address, "" when none was reached
    sessions: int
