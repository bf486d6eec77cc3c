-- mailfort schema 2 (PostgreSQL): cluster membership and the POP3 maildrop lock across nodes.
-- `nodes`: every node that ever registered. `state` is what the node or the operator said
-- (active, draining, gone); a node whose heartbeat is older than a few intervals is dead, which
-- readers compute from `heartbeat`. `listeners` and `load` are JSON written by the node.
CREATE TABLE nodes (
    name      TEXT PRIMARY KEY,
    state     TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'gone')),
    started   DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL,
    listeners TEXT NOT NULL DEFAULT '[]',
    load      TEXT NOT NULL DEFAULT '{}'
);
-- RFC 1939 §8 one session per maildrop, for every node: a lease row, renewed while the session
-- lives; an expired row is anyone's (its holder died).
CREATE TABLE maildrop_locks (
    account_id BIGINT PRIMARY KEY,
    owner      TEXT NOT NULL,
    until      DOUBLE PRECISION NOT NULL
);
CREATE INDEX queue_lease_owner ON queue(lease_owner) WHERE lease_owner IS NOT NULL;
