-- mailfort schema 2: what IMAP needs beyond delivery.
-- Expunged UIDs with the MODSEQ of their expunge, so a session (or a CONDSTORE/QRESYNC client)
-- can learn what vanished since the MODSEQ it last saw.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

-- Subscriptions are names, not mailboxes: RFC 9051 6.3.7 lets a client subscribe to a name
-- that does not exist (yet), and a subscription outlives DELETE.
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
INSERT INTO subscriptions(account_id, name) SELECT account_id, name FROM mailboxes WHERE subscribed = 1;
