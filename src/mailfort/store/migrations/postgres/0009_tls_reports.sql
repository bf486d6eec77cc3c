-- mailfort schema 9 (PostgreSQL): TLS reporting (RFC 8460). `tls_results` counts outgoing TLS
-- sessions per policy domain and UTC day with their outcome (result '' = success), added to by
-- every node's SMTP client; `tls_reports` records which (day, domain) reports were claimed, by
-- which node, so that a cluster sends each report once and each node stays within its daily cap.
-- Both are pruned after a few days (queue/tls_reports.py).
CREATE TABLE tls_results (
    day         TEXT NOT NULL,
    domain      TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy      TEXT NOT NULL,
    mx_host     TEXT NOT NULL,
    result      TEXT NOT NULL,
    address     TEXT NOT NULL,
    sessions    BIGINT NOT NULL,
    PRIMARY KEY (day, domain, policy_type, policy, mx_host, result, address)
);
CREATE TABLE tls_reports (
    day     TEXT NOT NULL,
    domain  TEXT NOT NULL,
    node    TEXT NOT NULL,
    claimed DOUBLE PRECISION NOT NULL,
    report  BOOLEAN NOT NULL,
    PRIMARY KEY (day, domain)
);
CREATE INDEX tls_reports_node ON tls_reports(node, claimed);
