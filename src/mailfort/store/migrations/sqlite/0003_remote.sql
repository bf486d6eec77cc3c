-- mailfort schema 3: what remote delivery remembers about each attempt.
-- `warned`: a delay warning (DSN, Action: delayed) was sent for this recipient; at most one.
-- The last failure as a DSN needs it (RFC 3464 2.3): its enhanced status, the remote MTA that
-- answered, the diagnostic ("smtp; 450 4.2.0 ..."), and when it happened.
ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN last_attempt REAL;
ALTER TABLE queue ADD COLUMN last_status TEXT;
ALTER TABLE queue ADD COLUMN remote_mta TEXT;
ALTER TABLE queue ADD COLUMN diagnostic TEXT;
-- Remote workers claim only items without an account: due ones first.
CREATE INDEX queue_remote_due ON queue(next_attempt) WHERE account_id IS NULL;
