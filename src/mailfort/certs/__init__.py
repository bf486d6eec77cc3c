"""Certificates: the node's TLS certificates from files or from an ACME CA (RFC 8555).

Owns: obtaining and renewing certificates, sharing them (and pending HTTP-01 challenges) through
the store so every node of a cluster serves the same one, and reloading a running node's TLS
context without a restart.

Holds: `acme_order` (one order on certbot's `acme` and josepy, its blocking steps on daemon
threads), `renewal` (`CertificateKeeper`: the node's task that orders under the store's
`acme-order` lease, renews, and reloads the live `SSLContext` from the store).

May import: `config`, the store's role interfaces (types), the leaves, cryptography, acme.
Must not import: `server/`, `queue/`, `delivery/`, a store engine (tests/unit/test_layers.py).
"""
