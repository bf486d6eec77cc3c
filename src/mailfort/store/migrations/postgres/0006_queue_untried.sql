-- queue_health measures the mail nobody has tried yet (attempts = 0) and nobody is working on
-- (no live lease): what the platform owes. A retry waits for a destination that failed, a leased
-- item for a remote server; neither is a backlog of ours, and a stranger can make both.
-- Partial and covering: the count and the oldest `created` from an index-only scan.
CREATE INDEX queue_untried ON queue(next_attempt, created, lease_until) WHERE attempts = 0;
DROP INDEX queue_due_created;
