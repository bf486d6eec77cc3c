"""Certificates: the node's TLS certificates from files or from an ACME CA (RFC 8555).

Owns: obtaining and renewing certificates, sharing them (and pending HTTP-01 challenges) through
the store so every node of a cluster serves the same one, and reloading a running node's TLS
context without a restart.

May import: `config`, the store's role interfaces (types), the leaves, cryptography, acme.
Must not import: `server/`, `queue/`, `delivery/`, a store engine (tests/unit/test_layers.py).
"""
