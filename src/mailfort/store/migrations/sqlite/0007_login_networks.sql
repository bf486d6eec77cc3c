-- mailfort schema 7: the networks each account has logged in from with its password.
-- The login throttle exempts them from the per-account limit, so an attack on an account does
-- not lock its owner out where the owner usually logs in (auth/known.py). Shared by every node
-- of a cluster and kept across restarts; written when a network is new or its row is old (not
-- on every login), forgotten when not seen for `[auth] known_network_days`, or all at once
-- when the password changes.
CREATE TABLE login_networks (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    network    TEXT NOT NULL,
    last_seen  REAL NOT NULL,
    PRIMARY KEY (account_id, network)
) WITHOUT ROWID;
CREATE INDEX login_networks_seen ON login_networks(account_id, last_seen);
