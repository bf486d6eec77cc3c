-- mailfort schema 12: messages and recipients each authenticated user submitted per hour
-- (`hour` = store time // 3600), for [submission] messages_per_hour / recipients_per_hour.
-- Counted in the store so every node of a cluster shares the count; a user's rows older than
-- the previous hour are deleted as the user sends again.
CREATE TABLE submission_counts (
    account    TEXT NOT NULL,
    hour       INTEGER NOT NULL,
    messages   INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    PRIMARY KEY (account, hour)
) WITHOUT ROWID;
