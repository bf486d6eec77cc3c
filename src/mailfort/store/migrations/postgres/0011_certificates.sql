-- mailfort schema 11 (PostgreSQL): certificates every node serves, and the ACME client's shared state.
-- `certificates`: one row per certificate (`name` "acme": the one ACME keeps); every node reloads
-- its TLS contexts when `updated` changes. `names` is a JSON list.
CREATE TABLE certificates (
    name      TEXT PRIMARY KEY,
    chain_pem TEXT NOT NULL,
    key_pem   TEXT NOT NULL,
    names     TEXT NOT NULL DEFAULT '[]',
    not_after DOUBLE PRECISION NOT NULL,
    updated   DOUBLE PRECISION NOT NULL
);
-- RFC 8555 8.3: pending HTTP-01 answers, so that whichever node the CA reaches answers it.
CREATE TABLE acme_challenges (
    token             TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    expires           DOUBLE PRECISION NOT NULL
);
-- The ACME account key per CA directory (RFC 8555 7.3): one account for the whole cluster.
CREATE TABLE acme_accounts (
    directory TEXT PRIMARY KEY,
    key_pem   TEXT NOT NULL,
    created   DOUBLE PRECISION NOT NULL
);
