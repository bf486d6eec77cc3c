-- mailfort schema 5: the status page's records, read by every node.
-- Published state of each component (after hysteresis); `findings` is JSON written by the leader.
CREATE TABLE status_components (
    component  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    since      REAL,
    findings   TEXT NOT NULL DEFAULT '[]',
    updated_at REAL
);
-- One row per component and UTC day: the worst state seen (`worst_rank` orders states, 0 =
-- operational) and how long it was degraded or in an outage. Pruned past [status] history_days.
CREATE TABLE status_history (
    component        TEXT NOT NULL,
    day              TEXT NOT NULL,
    worst            TEXT NOT NULL,
    worst_rank       INTEGER NOT NULL,
    degraded_seconds REAL NOT NULL DEFAULT 0,
    outage_seconds   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (component, day)
);
-- Incidents and maintenance windows: the searchable columns beside the whole record as JSON
-- (timeline, findings). `version` grows with every write, so an operator's read-modify-write
-- can detect a concurrent change instead of losing it.
CREATE TABLE status_incidents (
    id          TEXT PRIMARY KEY,
    origin      TEXT NOT NULL,
    opened_at   REAL NOT NULL,
    updated_at  REAL NOT NULL,
    resolved_at REAL,
    version     INTEGER NOT NULL DEFAULT 1,
    data        TEXT NOT NULL
);
CREATE INDEX status_incidents_updated ON status_incidents(updated_at);
CREATE INDEX status_incidents_open ON status_incidents(updated_at) WHERE resolved_at IS NULL;
CREATE TABLE status_maintenance (
    id           TEXT PRIMARY KEY,
    starts_at    REAL NOT NULL,
    ends_at      REAL NOT NULL,
    cancelled_at REAL,
    version      INTEGER NOT NULL DEFAULT 1,
    data         TEXT NOT NULL
);
CREATE INDEX status_maintenance_ends ON status_maintenance(ends_at);
CREATE TABLE status_webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    components TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
-- Named leases (the status leader): an expired row is anyone's.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  REAL NOT NULL
);
-- Id counters per prefix ("inc" -> inc-1, inc-2 ...), never handing a number out twice.
CREATE TABLE status_counters (
    prefix TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
-- Mail that settled (delivered or bounced) later than Store.delay_threshold after it was
-- accepted, recorded in the settling transaction: the basis of "your mail was delayed" notices.
CREATE TABLE delayed_mail (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL,
    queue_id    TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    settled_at  REAL NOT NULL
);
CREATE INDEX delayed_mail_settled ON delayed_mail(settled_at);
-- A notice delivered into an account's INBOX, once per key (incident id).
CREATE TABLE status_notices (
    key          TEXT NOT NULL,
    account_id   INTEGER NOT NULL,
    delivered_at REAL NOT NULL,
    PRIMARY KEY (key, account_id)
);
-- queue_health: count and oldest `created` of due items from the index alone.
CREATE INDEX queue_due_created ON queue(next_attempt, created);
-- Per-customer status: their queued mail in both directions without scanning the queue.
CREATE INDEX queue_account ON queue(account_id) WHERE account_id IS NOT NULL;
CREATE INDEX envelopes_account ON envelopes(coalesce(authenticated, sender));
