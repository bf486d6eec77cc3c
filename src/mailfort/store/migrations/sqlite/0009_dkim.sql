-- mailfort schema 9: DKIM signing keys and the secrets every node must agree on.
-- A domain's keys, one per selector; `state` is records.DkimState. Every node signs with the
-- active ones, so a rotation done on one node applies to the whole cluster at once, mail already
-- queued included (it is signed when it leaves).
CREATE TABLE dkim_keys (
    domain       TEXT NOT NULL,
    selector     TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    state        TEXT NOT NULL,
    created      REAL NOT NULL,
    activated_at REAL,
    retire_after REAL,
    retired_at   REAL,
    PRIMARY KEY (domain, selector)
);
-- Secrets generated once and then shared by every node (the SRS hash key): the first writer's
-- value wins, so two nodes starting together cannot end up with different ones.
CREATE TABLE shared_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
