-- mailfort schema 1: accounts, domains, aliases, mailboxes, messages, queue.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    name    TEXT PRIMARY KEY,
    created REAL NOT NULL
);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain        TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    quota_bytes   INTEGER NOT NULL DEFAULT 0,
    used_bytes    INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);

-- source '@example.test' is a catch-all for the domain.
CREATE TABLE aliases (
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (source, target)
);

CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    special_use   TEXT,
    subscribed    INTEGER NOT NULL DEFAULT 1,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);

-- A body is stored once per SMTP transaction, shared by every local copy and queue item.
CREATE TABLE blobs (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    size INTEGER NOT NULL
);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    flags         TEXT NOT NULL DEFAULT '',
    internal_date REAL NOT NULL,
    size          INTEGER NOT NULL,
    blob_id       INTEGER NOT NULL REFERENCES blobs(id),
    -- per-copy trace lines (Return-Path, Delivered-To) that precede the shared body
    prefix        BLOB NOT NULL DEFAULT x'',
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_id);

CREATE TABLE envelopes (
    id            INTEGER PRIMARY KEY,
    queue_id      TEXT NOT NULL UNIQUE,
    sender        TEXT NOT NULL,
    blob_id       INTEGER NOT NULL REFERENCES blobs(id),
    received      REAL NOT NULL,
    client        TEXT NOT NULL DEFAULT '',
    authenticated TEXT
);
CREATE INDEX envelopes_blob ON envelopes(blob_id);

CREATE TABLE queue (
    id           INTEGER PRIMARY KEY,
    envelope_id  INTEGER NOT NULL REFERENCES envelopes(id) ON DELETE CASCADE,
    recipient    TEXT NOT NULL,
    original     TEXT NOT NULL,
    account_id   INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  REAL,
    created      REAL NOT NULL
);
CREATE INDEX queue_due ON queue(next_attempt);
CREATE INDEX queue_envelope ON queue(envelope_id);
