"""Operator tools: what to publish in DNS, whether it is published, and whether a node is ready.

Owns: `mailfort dns records` (every record a domain needs, in zone-file syntax), `mailfort dns
check` (each record looked up and judged) and `mailfort doctor` (listeners, certificate, PTR, open
relay).

May import: `config`, `mail/`, `trust/`, `certs/`, `delivery/` (MX lookups, the SMTP client),
`wellknown/` (the MTA-STS policy id as served), the store's role interfaces (types), the leaves,
dnspython. Must not import: `server/`, `status/`, a store engine (tests/unit/test_layers.py).
"""
