-- queue_health measures the mail nobody has tried yet (attempts = 0) and nobody is working on
-- (no live lease): what the platform owes. A retry waits for a destination that failed, a leased
-- item for a remote server; neither is a backlog of ours, and a stranger can make both.
-- Partial and covering: the count and the oldest `created` come from this index alone (SQLite
-- counts an index as covering only when it holds every column the query names, `attempts` too).
CREATE INDEX queue_untried ON queue(next_attempt, created, lease_until, attempts)
    WHERE attempts = 0;
DROP INDEX queue_due_created;
