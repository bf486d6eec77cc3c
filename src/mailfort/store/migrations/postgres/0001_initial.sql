-- mailfort PostgreSQL schema 1: what SQLite schemas 1-3 hold, in one step.
-- Ids come from identity sequences, which never hand a number out twice (SQLite needs `meta`
-- counters for that); `meta` keeps the UIDVALIDITY counter. Times are seconds since the epoch.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    name    TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL
);

CREATE TABLE accounts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain        TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    quota_bytes   BIGINT NOT NULL DEFAULT 0,
    used_bytes    BIGINT NOT NULL DEFAULT 0,
    created       DOUBLE PRECISION NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);

-- source '@example.test' is a catch-all for the domain.
CREATE TABLE aliases (
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (source, target)
);

CREATE TABLE mailboxes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    special_use   TEXT,
    uidvalidity   BIGINT NOT NULL,
    uidnext       BIGINT NOT NULL DEFAULT 1,
    highestmodseq BIGINT NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);

-- A body is stored once per SMTP transaction, shared by every local copy and queue item.
CREATE TABLE blobs (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data BYTEA NOT NULL,
    size BIGINT NOT NULL
);

CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mailbox_id    BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           BIGINT NOT NULL,
    modseq        BIGINT NOT NULL,
    flags         TEXT NOT NULL DEFAULT '',
    internal_date DOUBLE PRECISION NOT NULL,
    size          BIGINT NOT NULL,
    blob_id       BIGINT NOT NULL REFERENCES blobs(id),
    -- per-copy trace lines (Return-Path, Delivered-To) that precede the shared body
    prefix        BYTEA NOT NULL DEFAULT '\x'::bytea,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_id);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

-- Expunged UIDs with the MODSEQ of their expunge, so a session (or a CONDSTORE/QRESYNC client)
-- can learn what vanished since the MODSEQ it last saw.
CREATE TABLE expunged (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

-- Subscriptions are names, not mailboxes: RFC 9051 6.3.7 lets a client subscribe to a name
-- that does not exist (yet), and a subscription outlives DELETE.
CREATE TABLE subscriptions (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE envelopes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_id      TEXT NOT NULL UNIQUE,
    sender        TEXT NOT NULL,
    blob_id       BIGINT NOT NULL REFERENCES blobs(id),
    received      DOUBLE PRECISION NOT NULL,
    client        TEXT NOT NULL DEFAULT '',
    authenticated TEXT
);
CREATE INDEX envelopes_blob ON envelopes(blob_id);

-- One row per recipient still to deliver. `warned`: a delay warning was sent for it (at most one);
-- last_* / remote_mta / diagnostic: the last failed attempt, as a DSN needs it (RFC 3464 2.3).
CREATE TABLE queue (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    envelope_id  BIGINT NOT NULL REFERENCES envelopes(id) ON DELETE CASCADE,
    recipient    TEXT NOT NULL,
    original     TEXT NOT NULL,
    account_id   BIGINT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  DOUBLE PRECISION,
    created      DOUBLE PRECISION NOT NULL,
    warned       BOOLEAN NOT NULL DEFAULT FALSE,
    last_attempt DOUBLE PRECISION,
    last_status  TEXT,
    remote_mta   TEXT,
    diagnostic   TEXT
);
CREATE INDEX queue_due ON queue(next_attempt);
CREATE INDEX queue_envelope ON queue(envelope_id);
CREATE INDEX queue_account ON queue(account_id) WHERE account_id IS NOT NULL;
-- Remote workers claim only items without an account: due ones first.
CREATE INDEX queue_remote_due ON queue(next_attempt) WHERE account_id IS NULL;
