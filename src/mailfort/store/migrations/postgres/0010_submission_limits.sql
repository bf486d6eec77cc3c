-- mailfort schema 10 (PostgreSQL): messages and recipients each authenticated user submitted per
-- hour (`hour` = store time // 3600), for [submission] messages_per_hour / recipients_per_hour.
-- Shared by every node of the cluster; a user's rows older than the previous hour are deleted
-- as the user sends again.
CREATE TABLE submission_counts (
    account    TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    messages   BIGINT NOT NULL,
    recipients BIGINT NOT NULL,
    PRIMARY KEY (account, hour)
);
